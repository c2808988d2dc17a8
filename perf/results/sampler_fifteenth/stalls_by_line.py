import csv, sys, collections
path=sys.argv[1]
rows=list(csv.reader(open(path)))
cur_file=None; hdr=None
agg=collections.Counter(); inst=collections.Counter(); src={}
for r in rows:
    if len(r)>=2 and r[0]=="File Path": cur_file=r[1].split('/')[-1]; continue
    if len(r)>4 and r[0]=="Line No" and r[4].startswith("Warp Stall"): hdr=r; continue
    if hdr is None or len(r)<8: continue
    if r[0] and r[0]!='' and r[2]=='-':  # a source line row
        try:
            s=int(r[4]); n=int(r[7])
        except: continue
        key=(cur_file,int(r[0])); agg[key]+=s; inst[key]+=n; src[key]=r[1].strip()[:90]
tot=sum(agg.values()); toti=sum(inst.values())
print("total stall samples",tot,"instructions (warp)",toti)
for k,v in agg.most_common(25):
    print(f"{100*v/tot:5.1f}% samples {100*inst[k]/toti:5.1f}% inst  {k[0]}:{k[1]}  {src[k]}")
