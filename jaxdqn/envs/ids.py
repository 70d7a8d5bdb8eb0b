"""The ids of every environment jaxdqn knows, without importing gymnax or JAX (validating a
config's ``env_id`` and answering ``--help`` must not pay for them)."""

# Discrete-action gymnax environments with flat vector observations: what an MLP Q-network fits.
GYMNAX_ENV_IDS = ("CartPole-v1", "Acrobot-v1", "MountainCar-v0")
# The five MinAtar games gymnax ships (all five reset and step with gymnax 1.0.1), with image
# observations (jaxdqn.envs.minatar): a CNN fits them.
MINATAR_ENV_IDS = ("Asterix-MinAtar", "Breakout-MinAtar", "Freeway-MinAtar",
                   "Seaquest-MinAtar", "SpaceInvaders-MinAtar")
# jaxdqn's own environments (jaxdqn.envs.probes, jaxdqn.envs.max_bias, jaxdqn.envs.deadly_triad).
PROBE_IDS = ("Probe1", "Probe2", "Probe3", "Probe4", "Probe5", "Probe6")
MAX_BIAS_ENV_IDS = ("MaxBiasMDP", "MaxBiasMDP-book")
TRIAD_ENV_IDS = ("TriadMDP", "TriadMDP-tabular", "TriadMDP-mc")
# The envs among these whose legal actions depend on the state (a ``legal_actions`` method): a
# sticky action could repeat an action that is illegal where it repeats.
LEGAL_MASK_ENV_IDS = ("MaxBiasMDP-book", "Probe6")
# gymnax envs with a Gymnasium twin of the same id: cross-checked (evaluate --gymnasium) and
# rendered (evaluate --video) in Gymnasium itself.
GYMNASIUM_ENV_IDS = ("CartPole-v1", "Acrobot-v1", "MountainCar-v0")
