import numpy as np
import pytest

from t2r.data.episodes import Episode


def test_an_episode_knows_its_length_and_its_steps() -> None:
    episode = Episode(
        {
            "observation/image": np.zeros((3, 4, 4, 3), np.uint8),
            "action": np.arange(6.0).reshape(3, 2),
        }
    )
    assert episode.num_steps == 3
    np.testing.assert_array_equal(episode.step(2)["action"], [4.0, 5.0])


@pytest.mark.parametrize(
    "steps, message",
    [
        ({}, "at least one step feature"),
        ({"a": np.zeros((2,)), "b": np.zeros((3,))}, "differ in length"),
        ({"a": np.zeros((0, 2))}, "at least one step"),
    ],
)
def test_a_malformed_episode_is_refused(steps: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Episode(steps)
