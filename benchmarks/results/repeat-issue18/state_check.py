# The reference block, a 10 MiB-weight block (wide) and an in-cache activation-heavy block (act), each in one
# session, timed in turn for SECONDS in one process pinned to core 1 (issue 18: is a run-long shift of the
# ratio the machine state or the process?). Run: python state_check.py 15, several times in a row.
import time, numpy as np, os, sys, json
from spaceevo.latency import create_backend, BlockUnit
from spaceevo.space import BlockConfig
from spaceevo.latency._backend import REFERENCE_BLOCK
os.sched_setaffinity(0,{1})
be=create_backend("ort", threads=1, reference=False)
ra=be.open_runner(be.prepare(BlockUnit(BlockConfig.parse(REFERENCE_BLOCK)),"int8"))
ca=be.open_runner(be.prepare(BlockUnit(BlockConfig.parse("ResNetBlock hw=5 cin=416 cout=416 k=5 e=1.5 s=1 act=relu")),"int8"))
cb=be.open_runner(be.prepare(BlockUnit(BlockConfig.parse("MobileNetV2ResBlock hw=80 cin=32 cout=32 k=3 e=4 s=1 act=relu6")),"int8"))
for r in (ra,ca,cb):
    for _ in range(20): r()
def sample(r, loops):
    t0=time.thread_time()
    for _ in range(loops): r()
    return (time.thread_time()-t0)*1e3/loops
R=[];A=[];B=[]
t_end=time.time()+float(sys.argv[1])
while time.time()<t_end:
    R.append(sample(ra,3)); A.append(sample(ca,1)); B.append(sample(cb,2))
print(json.dumps({"ref":np.median(R),"wide":np.median(A),"act":np.median(B)}))
