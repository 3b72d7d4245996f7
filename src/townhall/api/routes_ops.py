"""Health, readiness, Prometheus metrics and the self-contained API docs page."""

from __future__ import annotations

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response

from . import schemas
from .metrics import REGISTRY
from .problems import problem_response
from .services import Services

router = APIRouter()


@router.get("/healthz", response_model=schemas.HealthStatus, tags=["ops"])
async def healthz() -> Response:
    """The process is up."""
    return JSONResponse({"status": "ok"}, headers={"Cache-Control": "no-store"})


@router.get("/readyz", response_model=schemas.HealthStatus, tags=["ops"])
async def readyz(request: Request) -> Response:
    """The node can serve: its store answers."""
    svc: Services = request.app.state.services
    try:
        ok = await svc.store.ping()
    except Exception as exc:  # any store failure means not ready
        return problem_response(503, f"store unavailable: {exc}", code="not_ready")
    if not ok:
        return problem_response(503, "store unavailable", code="not_ready")
    return JSONResponse({"status": "ready"}, headers={"Cache-Control": "no-store"})


@router.get("/metrics", response_class=PlainTextResponse, tags=["ops"])
async def metrics() -> Response:
    """Prometheus exposition."""
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


DOCS_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>townhall API</title>
<style>body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}
code,pre{font-family:ui-monospace,monospace}.op{border:1px solid #ddd;border-radius:6px;
margin:.5rem 0;padding:.5rem .8rem}.m{font-weight:700;display:inline-block;min-width:4.5rem}
pre{background:#f6f6f6;padding:.5rem;overflow:auto;font-size:13px}</style></head>
<body><h1>townhall API</h1><p>The machine-readable document is
<a href="/openapi.json">/openapi.json</a>.</p><div id="ops">Loading…</div>
<script>
fetch('/openapi.json').then(r=>r.json()).then(doc=>{
  const root=document.getElementById('ops');root.textContent='';
  for(const [path,item] of Object.entries(doc.paths)){
    for(const [method,op] of Object.entries(item)){
      const d=document.createElement('details');d.className='op';
      const s=document.createElement('summary');
      const m=document.createElement('span');m.className='m';m.textContent=method.toUpperCase();
      const c=document.createElement('code');c.textContent=path;
      s.append(m,c,document.createTextNode(' — '+(op.summary||'')));d.append(s);
      const p=document.createElement('p');p.textContent=op.description||'';d.append(p);
      const pre=document.createElement('pre');
      pre.textContent=JSON.stringify({parameters:op.parameters,requestBody:op.requestBody,
        responses:Object.keys(op.responses||{})},null,1);d.append(pre);root.append(d);
    }
  }
});
</script></body></html>"""


@router.get("/docs", include_in_schema=False)
async def docs() -> Response:
    return HTMLResponse(DOCS_HTML)
