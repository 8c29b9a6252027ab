import json,glob,sys,statistics,collections
d=sys.argv[1]; link=sys.argv[2]
r=collections.defaultdict(list)
for f in sorted(glob.glob(d+'/raw/%s-*-src.json'%link)):
    j=json.load(open(f)); m=j['method']
    g=json.load(open(f.replace('-src.','-dst.')))
    T=j['total_time_s']
    r[m].append((T, j['cpu_channels_pct']*T/100, j['cpu_migration_pct']*T/100, j['process_cpu_pct']*T/100, g['cpu_channels_pct']*g['total_time_s']/100, g['process_cpu_pct']*g['total_time_s']/100, j['packets'], j.get('auto',{}).get('sweep_s',0)))
for m,v in r.items():
    med=lambda i: statistics.median(x[i] for x in v)
    print(m,len(v),'time %.3f srcchan %.3f srcmig %.3f srcproc %.3f dstchan %.3f dstproc %.3f packets %d sweep_s %.3f'%tuple(med(i) for i in range(8)))
