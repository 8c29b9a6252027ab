# Pools the base runs (HEAD's auto and zstd, interleaved with the variants) of the A/B tags per cell, with a 90% bootstrap interval of auto/zstd (2000 draws, seed 1).
import json,glob,statistics,random,sys,os
root=sys.argv[1] if len(sys.argv)>1 else '.'
def pool(tags):
    r={}
    for t in tags:
        pat='%s/%s-base-*/raw/*src.json'%(root,t) if t!='sl1g' else '%s/sl1g-*/raw/*src.json'%root
        for f in glob.glob(pat):
            d=json.load(open(f)); r.setdefault(d['method'],[]).append(d['total_time_s'])
    return r
def boot(a,b,n=2000):
    rnd=random.Random(1); out=[]
    for _ in range(n):
        out.append(statistics.median(rnd.choices(a,k=len(a)))/statistics.median(rnd.choices(b,k=len(b))))
    out.sort(); return out[n//20], out[n-1-n//20]
for name,tags in [('silesia live 1gbit',['sl1g','s1','s2','s3','s4','m1']),('generated live 1gbit',['g2','g4','m2']),('zero live 1gbit',['z1']),('zero live 100mbit',['h2']),('generated live 100mbit',['h4'])]:
    r=pool(tags); a=r['auto']; z=r['zstd']
    lo,hi=boot(a,z)
    print('%-24s auto n=%d %.3f  zstd n=%d %.3f  ratio %.3f  90%% %.3f-%.3f'%(name,len(a),statistics.median(a),len(z),statistics.median(z),statistics.median(a)/statistics.median(z),lo,hi))
