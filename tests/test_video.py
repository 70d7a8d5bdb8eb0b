"""evaluate --video: one greedy episode of Gymnasium's rendered env, every frame written; the
episode is the one the agent plays without rendering; unsupported requests fail clearly."""

import gymnasium
import jax
import pytest

imageio = pytest.importorskip("imageio")  # the video extra
pytest.importorskip("pygame")

import jaxdqn
from jaxdqn.agent import Agent
from jaxdqn.video import check_video_request, record_episode

CFG = jaxdqn.DQNConfig(hidden_sizes=(8,))


@pytest.fixture(scope="module")
def agent():
    return Agent(CFG, jaxdqn.init_q_params(CFG, jax.random.key(2)))


def _replay(agent, seed):
    env = gymnasium.make(CFG.env_id)
    obs, _ = env.reset(seed=seed)
    total, steps, done = 0.0, 0, False
    while not done:
        obs, r, terminated, truncated, _ = env.step(int(agent.act(obs)))
        total, steps, done = total + r, steps + 1, terminated or truncated
    return total, steps


@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")  # imageio reads mp4 via ffmpeg
@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_the_video_holds_the_greedy_episode(tmp_path, agent, suffix):
    video = record_episode(agent, tmp_path / f"episode{suffix}", seed=3)
    assert (video.episode_return, video.length) == _replay(agent, 3)
    assert video.length > 5 and video.fps == 50 and not video.truncated
    frames = imageio.v3.imread(video.path)
    if suffix == ".mp4":  # every frame, padded to multiples of 16 (400 x 600 -> 400 x 608)
        assert frames.shape == (video.length + 1, 400, 608, 3)
    else:  # the GIF writer merges identical consecutive frames
        assert frames.shape[1:3] == (400, 600) and 2 <= frames.shape[0] <= video.length + 1
    assert frames.std() > 0  # something is drawn


@pytest.mark.parametrize("config, path, message", [
    (CFG, "a.avi", "must end in .mp4 or .gif"),
    (CFG.replace(env_id="Probe1"), "a.mp4", "this run is on 'Probe1'"),
    (CFG.replace(max_episode_steps=100), "a.gif", "standard time limit of 500 steps"),
])
def test_unsupported_videos_are_refused_with_one_line(config, path, message):
    with pytest.raises(ValueError, match=message):
        check_video_request(config, path)
