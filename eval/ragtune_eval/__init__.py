"""ragtune's evaluation harness and the ``ragtune`` CLI: clients of the gateway's public REST API
(so every figure is what a user gets), never of its code.

``ragtune eval squad``: RAG vs fine-tuning vs both, measured on the user's own question-answering
data; ``ragtune eval beir``: retrieval alone on a BEIR dataset. The gateway's ``/v1/evaluations``
runs the same harness against itself."""
