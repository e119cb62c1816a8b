#!/usr/bin/env python3
"""Sequential latency of GET /v1/query beside POST /v1/similar with the raw sentence (the reference, same run), over the relevance set; a server on 127.0.0.1:18280."""
import json,time,urllib.request,urllib.parse
cases=json.load(open('tests/data/query_relevance.json'))
def t(f):
    xs=[]
    for _ in range(3):
        for c in cases:
            s=time.perf_counter(); f(c['q']); xs.append((time.perf_counter()-s)*1e3)
    xs.sort(); return xs[len(xs)//2], xs[int(len(xs)*0.99)-1]
u='http://127.0.0.1:18280'
q=lambda s: urllib.request.urlopen(u+'/v1/query?'+urllib.parse.urlencode({'q':s})).read()
b=lambda s: urllib.request.urlopen(urllib.request.Request(u+'/v1/similar',data=json.dumps({'movie':{'title':s}}).encode(),headers={'content-type':'application/json'})).read()
bq=t(b); qq=t(q)
print(f"/v1/similar (raw sentence): p50 {bq[0]:.1f} ms p99 {bq[1]:.1f} ms")
print(f"/v1/query:                  p50 {qq[0]:.1f} ms p99 {qq[1]:.1f} ms  (p99 ratio {qq[1]/bq[1]:.2f} x)")
