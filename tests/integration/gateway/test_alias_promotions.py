"""Alias promotions over real PostgreSQL, through two gateway replicas: the decision rule, the
conflict when the alias moved away from the holder the caller measured (nothing written then),
one promotion of an alias at a time across replicas, and tenancy.

No generator runs here: each replica is told the candidates are the tenant's adapters the way it
learns it from the generator's ``ListModels`` (its ``owned_models``), so the test exercises the
gateway's own rules and SQL."""

from __future__ import annotations

import asyncio

from tests.fixtures.gateway import Gateway
from tests.integration.gateway.conftest import GatewayFactory

FT_A, FT_B = "ft:SmolLM2:a:ftjob-a", "ft:SmolLM2:b:ftjob-b"
ALIAS = "ft:latest-good"


def owns(gateway: Gateway, tenant: str, *adapters: str) -> None:
    gateway.app.state.runtime.owned_models.update((tenant, a) for a in adapters)


async def test_promotion_rules_and_record(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway()
    tenant, _, key = await gateway.new_tenant()
    _, _, other_key = await gateway.new_tenant()
    owns(gateway, tenant, FT_A, FT_B)
    promotions = f"/v1/aliases/{ALIAS}/promotions"
    async with gateway.client(key) as http, gateway.client(other_key) as stranger:
        first = await http.post(promotions, json={"candidate": FT_A, "candidate_score": 40.0})
        assert first.status_code == 200, first.text
        assert first.json()["promoted"] and first.json()["holder"] is None
        assert first.json()["id"].startswith("promo_") and first.json()["object"] == "model.alias.promotion"

        stale = await http.post(promotions, json={"candidate": FT_B, "candidate_score": 99.0, "holder": None})
        assert stale.status_code == 409 and stale.json()["error"]["param"] == "holder"
        assert stale.json()["error"]["code"] == "alias_moved"
        no_score = await http.post(promotions, json={"candidate": FT_B, "candidate_score": 99.0, "holder": FT_A})
        assert no_score.status_code == 400 and no_score.json()["error"]["param"] == "holder_score"
        over_holder = {"candidate": FT_B, "holder": FT_A, "holder_score": 40.0}
        no_comparison = await http.post(promotions, json={**over_holder, "candidate_score": 41.0})
        assert no_comparison.status_code == 400 and no_comparison.json()["error"]["param"] == "comparison"
        noise = {"value": 1.0, "low": -0.5, "high": 2.5, "level": 0.95, "questions": 300}
        tie = await http.post(promotions, json={**over_holder, "candidate_score": 41.0, "comparison": noise})
        assert tie.status_code == 200 and not tie.json()["promoted"], "a higher mean inside the noise keeps the holder"
        assert tie.json()["comparison"]["low"] == -0.5 and "no significant improvement" in tie.json()["reason"]
        real = {**noise, "low": 0.2}
        better = await http.post(promotions, json={**over_holder, "candidate_score": 41.0, "comparison": real})
        assert better.status_code == 200 and better.json()["promoted"], better.text
        assert better.json()["comparison"] == {**real, "test": "paired-bootstrap", "p_value": None}

        held = (await http.get(f"/v1/aliases/{ALIAS}")).json()
        assert held["model"] == FT_B and held["score"] == 41.0 and held["object"] == "model.alias"
        history = (await http.get(promotions)).json()
        assert [(p["candidate"], p["promoted"]) for p in history["data"]] == [(FT_A, True), (FT_B, False), (FT_B, True)]
        assert history["object"] == "list" and history["first_id"] == history["data"][0]["id"]
        listed = (await http.get("/v1/aliases")).json()["data"]
        assert [(a["id"], a["model"]) for a in listed] == [(ALIAS, FT_B)]

        alias_model = await http.get(f"/v1/models/{ALIAS}")
        assert alias_model.status_code == 200, alias_model.text
        assert alias_model.json() == {
            "id": ALIAS,
            "object": "model",
            "created": held["updated_at"],
            "owned_by": tenant,
            "parent": None,
            "alias_for": FT_B,
        }

        adapter_alias = await http.post(promotions, json={"candidate": ALIAS, "candidate_score": 1.0})
        assert adapter_alias.status_code == 400 and adapter_alias.json()["error"]["param"] == "candidate"
        bad_name = await http.get("/v1/aliases/latest")
        assert bad_name.status_code == 400 and bad_name.json()["error"]["param"] == "alias"

        # another tenant: the alias does not exist for it
        assert (await stranger.get(f"/v1/aliases/{ALIAS}")).status_code == 404
        assert (await stranger.get("/v1/aliases")).json()["data"] == []
        assert (await stranger.delete(f"/v1/aliases/{ALIAS}")).status_code == 404
        deleted = await http.delete(f"/v1/aliases/{ALIAS}")
        assert deleted.json() == {"id": ALIAS, "object": "model.alias", "deleted": True}
        assert (await http.get(f"/v1/aliases/{ALIAS}")).status_code == 404
        assert len((await http.get(promotions)).json()["data"]) == 3, "the record outlives the alias"


async def test_one_promotion_at_a_time_across_replicas(start_gateway: GatewayFactory) -> None:
    """Two replicas promote different candidates against the same (absent) holder at once: one
    takes the alias, the other finds it moved (409) and records nothing."""
    first, second = await start_gateway(), await start_gateway()
    tenant, _, key = await first.new_tenant()
    owns(first, tenant, FT_A)
    owns(second, tenant, FT_B)
    promotions = "/v1/aliases/ft:race/promotions"
    async with first.client(key) as on_first, second.client(key) as on_second:
        replies = await asyncio.gather(
            on_first.post(promotions, json={"candidate": FT_A, "candidate_score": 1.0}),
            on_second.post(promotions, json={"candidate": FT_B, "candidate_score": 2.0}),
        )
        assert sorted(r.status_code for r in replies) == [200, 409], [r.text for r in replies]
        winner = next(r.json() for r in replies if r.status_code == 200)
        assert (await on_first.get("/v1/aliases/ft:race")).json()["model"] == winner["candidate"]
        assert [p["id"] for p in (await on_second.get(promotions)).json()["data"]] == [winner["id"]]
