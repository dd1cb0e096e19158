"""OncePerWorker: what every trial gets through tune.with_parameters (the runner's Plan) is unpickled once
per worker process, not at every trial start (docs/benchmarks.md, "10,000 trials")."""
from ray import cloudpickle

from trainables import ray_trainable
from trainables.ray_trainable import OncePerWorker


class Counted:
    loads = 0

    def __init__(self, payload):
        self.payload = payload

    def __setstate__(self, state):
        Counted.loads += 1
        self.__dict__.update(state)


def test_a_wrapped_object_unpickles_to_itself_once_per_process_however_often_it_is_fetched():
    Counted.loads = 0
    sent = cloudpickle.dumps(OncePerWorker(Counted(list(range(1000)))))
    first, second = cloudpickle.loads(sent), cloudpickle.loads(sent)
    assert isinstance(first, Counted) and first.payload == list(range(1000))
    assert first is second and Counted.loads == 1


def test_each_wrapping_is_its_own_object_and_the_cache_keeps_only_the_newest():
    keep = ray_trainable._KEEP
    sent = [cloudpickle.dumps(OncePerWorker(Counted(i))) for i in range(keep + 2)]
    got = [cloudpickle.loads(s) for s in sent]
    assert [g.payload for g in got] == list(range(keep + 2))
    assert len(ray_trainable._UNPICKLED) <= keep
    Counted.loads = 0
    again = cloudpickle.loads(sent[0])  # dropped from the cache: unpickled afresh, still right
    assert again.payload == 0 and again is not got[0] and Counted.loads == 1
