"""The anchor apps of the serving benchmark, run with uvicorn by ``run.py``.

``BENCH_MODEL`` names the pickled scikit-learn pipeline (the same file kyklos serves),
``BENCH_FEATURES`` a JSON list of ``[name, "numeric" | "categorical"]``.

- ``naive:app``: what a user writes by hand: a pydantic model of the features, and
  ``model.predict_proba(pd.DataFrame([item.model_dump()]))`` in a plain ``def`` endpoint
  (FastAPI runs it in its thread pool). ``POST /predict`` takes one row, ``/predict_many`` a
  list of rows.
- ``bare_predict``: a bare ASGI app (no framework) that parses the JSON body, builds a
  DataFrame and calls ``predict_proba`` on the event loop: the model's cost with the least HTTP
  around it, one request at a time (no batching).
- ``bare_fixed``: a bare ASGI app that reads the body and answers a fixed JSON: the Python
  HTTP ceiling of uvicorn on this machine.
"""

from __future__ import annotations

import json
import os
from typing import Any

import cloudpickle
import pandas as pd
from fastapi import FastAPI
from pydantic import create_model

with open(os.environ["BENCH_MODEL"], "rb") as fh:
    MODEL = cloudpickle.load(fh)
FEATURES: list[tuple[str, str]] = [tuple(f) for f in json.loads(os.environ["BENCH_FEATURES"])]

Item = create_model(  # type: ignore[call-overload]
    "Item",
    **{
        name: ((float | None) if kind == "numeric" else (str | None), None)
        for name, kind in FEATURES
    },
)

app = FastAPI()


@app.post("/predict")
def predict(item: Item) -> dict[str, Any]:  # type: ignore[valid-type]
    frame = pd.DataFrame([item.model_dump()])  # type: ignore[attr-defined]
    proba = MODEL.predict_proba(frame)[:, 1]
    return {"prediction": int(proba[0] >= 0.5), "probability": float(proba[0])}


@app.post("/predict_many")
def predict_many(items: list[Item]) -> dict[str, Any]:  # type: ignore[valid-type]
    frame = pd.DataFrame([item.model_dump() for item in items])  # type: ignore[attr-defined]
    proba = MODEL.predict_proba(frame)[:, 1]
    return {"predictions": (proba >= 0.5).astype(int).tolist(), "probabilities": proba.tolist()}


async def _body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _answer(send: Any, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def bare_predict(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    payload = json.loads(await _body(receive))
    rows = payload.get("rows", [payload])
    proba = MODEL.predict_proba(pd.DataFrame(rows))[:, 1]
    answer = {"predictions": (proba >= 0.5).astype(int).tolist(), "scores": proba.tolist()}
    await _answer(send, json.dumps(answer).encode())


async def bare_fixed(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await _body(receive)
    await _answer(send, b'{"predictions":[0]}')
