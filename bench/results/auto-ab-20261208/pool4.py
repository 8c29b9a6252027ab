import json,glob,sys,statistics,random,collections
for tag in sys.argv[1:]:
    res=collections.defaultdict(list); raw=collections.defaultdict(list)
    for f in glob.glob('%s-*-*/raw/*src.json'%tag):
        v=f.split('/')[0][len(tag)+1:].rsplit('-',1)[0]
        try: d=json.load(open(f))
        except Exception: continue
        res[(v,d['method'])].append(d['total_time_s'])
    fixed=[k for k in res if k[0]=='base' and k[1]!='auto']
    z=res[fixed[0]] if fixed else None
    rng=random.Random(1)
    for k in sorted(res):
        x=res[k]; line='%s %-5s %-5s n=%2d median %.3f'%(tag,k[0],k[1],len(x),statistics.median(x))
        if z:
            draws=sorted(statistics.median(rng.choices(x,k=len(x)))/statistics.median(rng.choices(z,k=len(z))) for _ in range(2000))
            line+='  /%s %.3f  90%% %.3f-%.3f'%(fixed[0][1],statistics.median(x)/statistics.median(z),draws[100],draws[1899])
        print(line)
