"""How often an agent hands its proxy new input: kube-proxy's BoundedFrequencyRunner
(burstSyncs 2, then one per minSyncPeriod), the period growing with the lab."""

from __future__ import annotations

from pathlib import Path

from generator.node.feeds import FEED_INTERVAL, MAX_FEED_INTERVAL, FeedLimiter, feed_interval


def test_two_feeds_at_once_then_one_per_interval() -> None:
    limiter = FeedLimiter(interval=1.0, burst=2)
    start = limiter.stamp
    assert limiter.take(start) and limiter.take(start + 0.01)
    assert not limiter.take(start + 0.02)
    assert abs(limiter.ready_in(start + 0.02) - 0.98) < 0.03
    assert not limiter.take(start + 0.9)
    assert limiter.take(start + 1.05)
    assert not limiter.take(start + 1.1)
    # A quiet spell fills the bucket again, never past the burst.
    assert limiter.take(start + 10) and limiter.take(start + 10) and not limiter.take(start + 10)


def test_the_interval_grows_with_the_lab_up_to_its_bound() -> None:
    assert feed_interval(3) == FEED_INTERVAL == 1.0
    assert feed_interval(10) == 1.0
    assert feed_interval(25) == 2.5
    assert feed_interval(100) == 10.0
    assert feed_interval(250) == 25.0
    assert feed_interval(1000) == MAX_FEED_INTERVAL == 30.0


def test_the_first_input_waits_a_bounded_while_for_every_node_to_be_ready(tmp_path: Path) -> None:
    from generator.node.agent import FIRST_FEED_HOLD, Agent

    agent = Agent("n0", cluster_file=tmp_path / "cluster.json", state_dir=tmp_path)
    agent.learn_nodes({"nodes": [{"name": "n0"}, {"name": "n1"}, {"name": "n2"}]})  # type: ignore[typeddict-item]
    pending = {"yes": True}
    agent.pods.busy = lambda: pending["yes"]  # type: ignore[method-assign]
    start = agent.started
    assert not agent.may_feed(start + 1.0), "own pods still Pending: hold the first input"
    assert agent.may_feed(start + FIRST_FEED_HOLD + 0.1), "but not for ever"
    pending["yes"] = False
    agent.liveness.live = frozenset({"n1"})
    agent.peer_files.docs = {"n1": {"ready": True}, "n2": {"ready": False}}  # type: ignore[typeddict-item]
    assert not agent.may_feed(start + 1.0), "n2 is not live, and its pods are Pending"
    agent.liveness.live = frozenset({"n1", "n2"})
    assert not agent.may_feed(start + 1.0), "n2 is live, its pods still Pending: hold it too"
    agent.peer_files.docs["n2"]["ready"] = True
    assert agent.may_feed(start + 1.0), "every peer ready: feed"
    pending["yes"] = True
    assert agent.may_feed(start + 1.0), "after an input with everything ready, pods no longer hold it"
