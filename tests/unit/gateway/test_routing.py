"""Adapter affinity: rendezvous hashing is stable, spreads adapters, and moves only a departed
replica's adapters; address lists become gRPC multi-address targets."""

from __future__ import annotations

import collections

import pytest

from ragtune_common.channels import grpc_target, split_host_port, split_target
from ragtune_gateway.downstream.routing import rendezvous_order, rendezvous_score

REPLICAS = [f"10.0.0.{i}:50052" for i in range(1, 5)]
ADAPTERS = [f"tenant-{i % 7}/ft:base:adapter-{i}" for i in range(2000)]


def test_order_is_stable_and_independent_of_listing_order() -> None:
    assert rendezvous_score("a", "r") == rendezvous_score("a", "r")  # not Python's salted hash()
    assert rendezvous_score("t/x", "10.0.0.1:50052") == 3320005960576828647  # same in every process
    for key in ADAPTERS[:50]:
        assert rendezvous_order(key, REPLICAS) == rendezvous_order(key, list(reversed(REPLICAS)))


def test_adapters_spread_over_replicas() -> None:
    counts = collections.Counter(rendezvous_order(key, REPLICAS)[0] for key in ADAPTERS)
    assert set(counts) == set(REPLICAS)
    assert max(counts.values()) < 1.25 * len(ADAPTERS) / len(REPLICAS)


def test_a_replica_leaving_moves_only_its_adapters_to_their_next_choice() -> None:
    before = {key: rendezvous_order(key, REPLICAS) for key in ADAPTERS}
    gone = REPLICAS[2]
    remaining = [r for r in REPLICAS if r != gone]
    moved = 0
    for key, order in before.items():
        after = rendezvous_order(key, remaining)
        if order[0] == gone:
            moved += 1
            assert after[0] == order[1], "a departed replica's adapter goes to its second choice"
        else:
            assert after[0] == order[0], "an adapter on a remaining replica must not move"
    assert 0.15 < moved / len(ADAPTERS) < 0.35  # about a quarter: only the departed replica's share
    # and when it comes back, exactly those return
    assert all(rendezvous_order(k, REPLICAS) == o for k, o in before.items())


def test_address_lists_become_multi_address_targets() -> None:
    assert grpc_target("127.0.0.1:50051") == "127.0.0.1:50051"
    assert grpc_target("retriever:50051") == "retriever:50051"  # one name: gRPC's DNS resolver, re-resolved
    assert grpc_target("dns:///retriever.ns.svc:50051") == "dns:///retriever.ns.svc:50051"
    assert grpc_target("127.0.0.1:50051, 127.0.0.1:50061") == "ipv4:127.0.0.1:50051,127.0.0.1:50061"
    assert grpc_target("localhost:50051,127.0.0.1:50061") == "ipv4:127.0.0.1:50051,127.0.0.1:50061"
    assert grpc_target("[::1]:50051,[::1]:50061") == "ipv6:[::1]:50051,[::1]:50061"
    assert split_target("a:1,b:2") == ["a:1", "b:2"]
    assert split_host_port("[::1]:7") == ("::1", 7)
    for bad in ("", "nohost", "h:notaport", "h:70000", "127.0.0.1:1,no-such-host.invalid:2"):
        with pytest.raises(ValueError):
            grpc_target(bad)
