"""What a transport tells the data plane about the request it serves, beside the body and the headers."""

from __future__ import annotations

from contextvars import ContextVar

#: the query string of the REST request being served (or the one a job was submitted with): the data plane gets
#: only the body and the headers, and a raw image upload carries its parameters in the query string (`codecs.forms`)
request_query: ContextVar[str] = ContextVar("request_query", default="")
