"""Rerankers (``/v1/rerank``, or Cohere's and infinity's ``/rerank`` with ``target.route``): a query and
its documents in, one relevance score per document out. The answer is one JSON body, so TTFT is its
first byte and latency its last; throughput in documents is requests times ``target.documents``.

A synthetic request's prompt is split into the query and the documents, each an equal run of words, so
``--input-tokens`` is the words a request carries in all.
"""

from __future__ import annotations

from typing import Any

from servewise.protocols.base import Failure, Framing, ResponseReader, int_at, mismatch, request_text
from servewise.protocols.endpoint import auth_headers
from servewise.protocols.events import CountedBodyReader
from servewise.records import ErrorClass, RequestRecord
from servewise.spec.models import TargetSpec
from servewise.workload.plan import PlannedRequest

EXPECTED = "rerank"
TIMING = "latency (E2E): the answer's last byte - the request's first; TTFT: its first byte; no TPOT"


def split_documents(text: str, documents: int) -> tuple[str, list[str]]:
    """The query (the first part) and ``documents`` documents, from one text: every part non-empty."""
    words = text.split() or ["query"]
    per = max(1, len(words) // (documents + 1))
    parts = [" ".join(words[i * per : (i + 1) * per]) or words[-1] for i in range(documents + 1)]
    return parts[0], parts[1:]


class RerankAdapter(Framing):
    def __init__(self, target: TargetSpec, model: str | None, api_key: str | None) -> None:
        super().__init__(target, model, auth_headers(api_key), stream=False)
        self.documents = target.documents

    def body(self, request: PlannedRequest) -> dict[str, Any]:
        query, documents = split_documents(request_text(request), self.documents)
        body = self.model_field()
        body |= {"query": query, "documents": documents, "return_documents": False}
        return body | self.target.extra_body

    def request_bytes(self, request: PlannedRequest) -> bytes:
        return self.frame_json(self.body(request), request)

    def reader(self, collect_text: bool = False) -> ResponseReader:
        return RerankReader(self.documents)


class RerankReader(CountedBodyReader):
    expected = EXPECTED
    __slots__ = ()

    def read(self, body: dict[str, Any], raw: bytearray, record: RequestRecord) -> Failure | None:
        results = body.get("results")
        if not isinstance(results, list):
            return mismatch(EXPECTED, body, raw)
        scored = [
            r
            for r in results
            if isinstance(r, dict) and isinstance(r.get("relevance_score", r.get("score")), (int, float))
        ]
        if len(scored) != self.wanted:
            return ErrorClass.PROTOCOL, f"rerank answer scored {len(scored)} of {self.wanted} documents"
        usage = body.get("usage")
        record.input_tokens = int_at(usage, "prompt_tokens") or int_at(usage, "total_tokens")
        self.no_text(record)
        return None
