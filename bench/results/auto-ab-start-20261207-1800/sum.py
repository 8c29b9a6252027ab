import json,glob,statistics as st,sys,collections
tag=sys.argv[1]
d=collections.defaultdict(list)
for f in glob.glob(f'/tmp/s29/{tag}-*/*/raw/*-src.json')+glob.glob(f'/tmp/s29/{tag}-*/raw/*-src.json'):
    parts=f.split('/')
    v=parts[3][len(tag)+1:].rsplit('-',1)[0]
    m=parts[-1].split('-')[1]
    sec=parts[4] if parts[4]!='raw' else ''
    j=json.load(open(f))
    a=j.get('auto')
    comp=first=0
    if a:
        comp=sum(x for k,x in a['rounds'][0]['bytes'].items() if k!='none')
        first= len(a['decisions'])>1 and a['decisions'][1]['choice']!='none'
    d[(sec,v,m)].append((j['total_time_s'],comp,first))
for k in sorted(d):
    x=d[k]
    print('%-16s %-22s %-5s n=%2d time %.3f mean %.3f  comp>0 %2d  first!=none %d  compMB med %.1f'%(k[0],k[1],k[2],len(x),st.median(a[0] for a in x),st.mean(a[0] for a in x),sum(1 for a in x if a[1]>0),sum(1 for a in x if a[2]),st.median(a[1] for a in x)/1e6))
