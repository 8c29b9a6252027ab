import json,glob,sys,statistics,collections
tag=sys.argv[1]
res=collections.defaultdict(list); raw=collections.defaultdict(list)
for f in glob.glob('/tmp/s30/%s-*-*/raw/*src.json'%tag):
    v=f.split('/')[3][len(tag)+1:].rsplit('-',1)[0]
    d=json.load(open(f)); m=d['method'] if d['method']!='auto' else 'auto'
    res[(v,m)].append(d['total_time_s'])
    if 'auto' in d:
        r1=d['auto']['rounds'][0]['bytes'] if d['auto']['rounds'] else {}
        raw[(v,m)].append(r1.get('none',0)/1e6)
for k in sorted(res):
    x=res[k]; print('%-22s %-5s n=%2d median %.3f mean %.3f  raw1 %s'%(k[0],k[1],len(x),statistics.median(x),statistics.mean(x), ('%.1f'%statistics.median(raw[k])) if raw[k] else '-'))
