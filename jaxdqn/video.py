"""A video of one greedy episode in Gymnasium's rendered environment, written with imageio.

``record_episode(agent, "cartpole.mp4")`` plays one episode of ``gymnasium.make(env_id,
render_mode="rgb_array")`` with ``agent.act`` and writes every frame (``.mp4`` through imageio's
ffmpeg plugin, ``.gif`` through Pillow) at the env's own frame rate. Needs the ``video`` extra
(imageio, imageio-ffmpeg, and pygame, which Gymnasium's classic-control renderer draws with).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np

from jaxdqn.envs import GYMNASIUM_ENV_IDS, gymnasium_env, gymnasium_limit_mismatch

VIDEO_ENV_IDS = GYMNASIUM_ENV_IDS  # Gymnasium renders them
VIDEO_SUFFIXES = (".mp4", ".gif")


class EpisodeVideo(NamedTuple):
    path: Path
    episode_return: float
    length: int  # env steps; the video holds length + 1 frames (the reset frame first)
    truncated: bool  # ended by the time limit
    fps: int


def check_video_request(config, path: str | os.PathLike) -> None:
    """Raises ``ValueError`` (one line) unless a video of ``config``'s env can be written to
    ``path``: a Gymnasium-rendered env at its standard time limit, a known suffix, the packages."""
    suffix = Path(path).suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise ValueError(f"--video {str(path)!r}: the file must end in .mp4 or .gif")
    if config.env_id not in VIDEO_ENV_IDS:
        raise ValueError(f"--video renders {', '.join(VIDEO_ENV_IDS)} (Gymnasium's renderer); "
                         f"this run is on {config.env_id!r}")
    limit = gymnasium_limit_mismatch(config)
    if limit is not None:
        raise ValueError(f"--video plays {config.env_id} at its standard time limit of {limit} "
                         f"steps; this run uses max_episode_steps={config.max_episode_steps}")
    missing = [name for name in ("imageio", "pygame") if not _importable(name)]
    if suffix == ".mp4" and not _importable("imageio_ffmpeg"):
        missing.append("imageio-ffmpeg")
    if missing:
        raise ValueError(f"--video needs {', '.join(missing)}: pip install \"jaxdqn[video]\"")


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def record_episode(agent, path: str | os.PathLike, seed: int = 0) -> EpisodeVideo:
    """Plays one greedy episode of ``agent`` (``jaxdqn.load(...)``) in Gymnasium, reset with
    ``seed``, and writes its frames to ``path`` (``.mp4`` or ``.gif``, atomically); with the run's
    sticky actions (``envs.gymnasium_env``)."""
    check_video_request(agent.config, path)
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")  # no sound card or display needed:
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # keep SDL from complaining about either
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    import imageio

    from jaxdqn.io import atomic_open

    env = gymnasium_env(agent.config, render_mode="rgb_array")
    fps = int(env.metadata.get("render_fps", 30))
    obs, _ = env.reset(seed=seed)
    frames = [env.render()]
    total, length, terminated, truncated = 0.0, 0, False, False
    while not (terminated or truncated):
        obs, reward, terminated, truncated, _ = env.step(int(agent.act(obs)))
        total += float(reward)
        length += 1
        frames.append(env.render())
    env.close()
    path = Path(path)
    suffix = path.suffix.lower()
    with atomic_open(path, "wb") as f:
        if suffix == ".gif":
            imageio.v3.imwrite(f, np.stack(frames), extension=".gif",
                               duration=1000.0 / fps, loop=0)
        else:
            with warnings.catch_warnings():  # ffmpeg runs as a subprocess; JAX warns on fork
                warnings.filterwarnings("ignore", message="os.fork", category=RuntimeWarning)
                imageio.v3.imwrite(f, np.stack([_pad16(fr) for fr in frames]), extension=".mp4",
                                   plugin="FFMPEG", fps=fps)
    return EpisodeVideo(path=path, episode_return=total, length=length,
                        truncated=bool(truncated and not terminated), fps=fps)


def _pad16(frame: np.ndarray) -> np.ndarray:
    """Pads a frame with its edge pixels to sides that are multiples of 16 (what H.264 encoders
    want), instead of letting the writer rescale it."""
    h, w = frame.shape[:2]
    return np.pad(frame, ((0, -h % 16), (0, -w % 16), (0, 0)), mode="edge")
