"""Rolling an alias back, over real PostgreSQL: the base model may hold an alias (the loop starts
from an alias serving it), a significant promotion moves the alias to an adapter, one call gives it
back to the holder that move displaced and is recorded among the promotions; a second rollback
undoes the first; an alias with no earlier holder, or another tenant's, cannot be rolled back.

No generator runs here: the replica is told the tenant's models as it learns them from the
generator's ``ListModels``."""

from __future__ import annotations

from tests.integration.gateway.conftest import GatewayFactory

BASE, FT_A = "SmolLM2-135M-Instruct", "ft:SmolLM2:a:ftjob-a"
ALIAS = "ft:support"
SIGNIFICANT = {"value": 30.0, "low": 12.0, "high": 48.0, "level": 0.95, "questions": 40}


async def test_rollback_gives_the_alias_back_and_is_recorded(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway()
    tenant, _, key = await gateway.new_tenant()
    _, _, other_key = await gateway.new_tenant()
    runtime = gateway.app.state.runtime
    runtime.base_model = BASE
    runtime.owned_models.add((tenant, FT_A))
    promotions, rollback = f"/v1/aliases/{ALIAS}/promotions", f"/v1/aliases/{ALIAS}/rollback"
    async with gateway.client(key) as http, gateway.client(other_key) as stranger:
        assert (await http.post(rollback)).status_code == 404  # no alias yet
        serving = await http.post(promotions, json={"candidate": BASE, "candidate_score": 0, "metric": "pass_rate"})
        assert serving.status_code == 200 and serving.json()["promoted"], serving.text
        first = await http.post(rollback)
        assert first.status_code == 409 and first.json()["error"]["code"] == "no_previous_holder", first.text

        moved = await http.post(
            promotions,
            json={
                "candidate": FT_A,
                "candidate_score": 80.0,
                "holder": BASE,
                "holder_score": 50.0,
                "metric": "pass_rate",
                "comparison": SIGNIFICANT,
            },
        )
        assert moved.status_code == 200 and moved.json()["promoted"], moved.text
        assert (await http.get(f"/v1/aliases/{ALIAS}")).json()["model"] == FT_A

        assert (await stranger.post(rollback)).status_code == 404
        back = await http.post(rollback)
        assert back.status_code == 200, back.text
        record = back.json()
        assert record["candidate"] == BASE and record["holder"] == FT_A and record["promoted"]
        assert record["evaluation"]["rollback_of"] == moved.json()["id"] and "rollback" in record["reason"]
        held = (await http.get(f"/v1/aliases/{ALIAS}")).json()
        assert held["model"] == BASE and held["score"] == 50.0

        again = await http.post(rollback)  # undoes the rollback
        assert again.status_code == 200 and again.json()["candidate"] == FT_A, again.text
        assert (await http.get(f"/v1/aliases/{ALIAS}")).json()["model"] == FT_A
        history = (await http.get(promotions)).json()["data"]
        assert [(p["candidate"], p["holder"]) for p in history] == [
            (BASE, None),
            (FT_A, BASE),
            (BASE, FT_A),
            (FT_A, BASE),
        ]
