"""The Tandem ingress: OpenAI-compatible HTTP in front of every pool.

One Ray Serve deployment (`TandemIngressDeployment`, a subclass of `ray.serve.llm`'s
`OpenAiIngress`). A completion request goes through one module per stage, in this order:

- `edge`: the API key, its rate limit, and the body (size limit, strict JSON);
- `parse`: the request checked against vLLM's request models and the routing hints,
  and the model it names looked up in the route table;
- `dispatch`: a pool chosen by the routing policy, the call to its LLMServer deployment,
  one retry elsewhere when a pool fails before answering;
- `relay`: the SSE stream passed to the client, with the body `id` set to the request id;
- `accounting`: metrics, the router's observation and the request-log row, once per request.

`app` holds the endpoints and wires the stages; `pool_sync` runs beside the requests: it
polls the route table, marks pools down when Serve reports no running replica, and probes
idle or failed pools; `exchange` is the record one request carries through the stages.
"""

from tandem.serve.ingress.app import TandemIngress, TandemIngressDeployment, app

__all__ = ["TandemIngress", "TandemIngressDeployment", "app"]
