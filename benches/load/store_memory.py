"""Bytes of Envoy memory per binding in the shared-data store.

Run: .tools/venv/bin/python benches/load/store_memory.py   (after `make wasm` and `make deps`)
Issues 2000 client-credentials tokens through certbound and compares Envoy's
/memory `allocated` before and after.
"""
import tempfile
import json, sys, time, urllib.request
from pathlib import Path as _P
sys.path.insert(0, str(_P(__file__).resolve().parents[2] / "tests" / "e2e"))
import harness, requests
from pathlib import Path
w = Path(tempfile.mkdtemp(prefix="certbound-mem-"))
pki = harness.Pki(w/"certs"); c = pki.client("c")
a = harness.AuthorizationServer(w, [harness.as_client("c", "s", ["client_credentials"])])
e = harness.Envoy(w, {"clients":[harness.certbound_client("c", certificates=[c.pem], upstream_secret="s")], "store": {"capacity": 4096}},
                  cert_dir=pki.dir, as_port=a.port, api_port=1, concurrency=1, log_level="warning")
def alloc():
    return int(json.loads(urllib.request.urlopen(f"http://127.0.0.1:{e.admin_port}/memory").read())["allocated"])
s = requests.Session()
def issue(n):
    for _ in range(n):
        r = s.post(e.url+"/oauth2/token", data={"grant_type":"client_credentials","client_id":"c"}, cert=c.pair, verify=str(pki.ca_path))
        assert r.status_code == 200, r.text
issue(200)
b = alloc(); t=time.time(); issue(2000); dt=time.time()-t; a2 = alloc()
print(f"2000 bindings: allocated {b} -> {a2}: {(a2-b)/2000:.0f} bytes per binding; {2000/dt:.0f} tokens/s")
e.stop(); a.stop()
