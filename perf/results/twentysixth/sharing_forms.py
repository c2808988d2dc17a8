#!/usr/bin/env python3
# Section (c) on the CPU re-priced three ways from each run's own profile: without the sharing of
# the cores ('none'), in lockstep ('additive': step + (s - 1) x compute - bubble) and as the floor
# ('max': max(step, s x compute), the predictor's reading since the twenty-sixth session). Usage: sharing_forms.py MOETRON [RUN ...]
# (default: every run under runs/; s = 4 for e2e3, held to one core, else 2).
import h5py, subprocess, re, sys, os, glob, statistics
M = sys.argv[1] if len(sys.argv) > 1 else 'build/moetron'
here = os.path.dirname(os.path.abspath(__file__))
runs = sys.argv[2:] or sorted(glob.glob(os.path.join(here, 'runs', '*')))
rows=[]
for d, s in ((r, 4 if r.endswith('e2e3') else 2) for r in runs):
    g=h5py.File(d+'/validation.h5')['end_to_end']
    labels=[x.decode() for x in g['label'][()]]
    meas=g['measured_s'][()]
    w=d+'/work'
    for lab, m in zip(labels, meas):
        plan=lab.split(' ')[0]
        out=subprocess.run([M,'plan','--model',w+'/olmoe-tiny','--profile',w+'/olmoe-tiny-profile-4r-cpu.h5','--ranks','4','--ranks-per-node','4','--prompts',w+'/olmoe-tiny-e2e-4.jsonl','--max-batch','16','--max-batch-tokens','128','--hardware','cpu','--explain',plan],capture_output=True,text=True).stdout
        line=[l for l in out.splitlines() if l.strip().startswith('prediction   compute')][0]
        c=float(re.search(r'compute ([\d.]+)',line).group(1)); b=float(re.search(r'bubble ([\d.]+)',line).group(1))
        st=[l for l in out.splitlines() if l.strip().startswith('step ')][0]
        tot=float(re.search(r'step ([\d.]+) us',st).group(1))
        add=tot+max(0,(s-1)*c-b); mx=max(tot,s*c)
        rows.append((d,plan,s,m*1e6,tot,add,mx))
        print(f"{os.path.basename(d):8s} {plan:16s} s={s} meas {m*1e6:7.0f} none {tot:7.0f} ({tot/m/1e6-1:+.0%}) additive {add:7.0f} ({add/m/1e6-1:+.0%}) max {mx:7.0f} ({mx/m/1e6-1:+.0%})")
for i,name in ((4,'none'),(5,'additive'),(6,'max')):
    e=[abs(r[i]/r[3]-1) for r in rows]; sg=[r[i]/r[3]-1 for r in rows]
    print(name, 'median |err| %.0f%%'%(100*statistics.median(e)), 'median signed %.0f%%'%(100*statistics.median(sg)))
    for group, keep in (('runs e2e1-e2e3', lambda d: not os.path.basename(d).startswith(('e2e4', 'e2e5'))),
                        ('runs e2e4-*', lambda d: os.path.basename(d).startswith('e2e4')),
                        ('runs e2e5-*', lambda d: os.path.basename(d).startswith('e2e5'))):
        part = [r[i] / r[3] - 1 for r in rows if keep(r[0])]
        if part:
            print('   ', group, 'median |err| %.0f%%' % (100 * statistics.median(map(abs, part))),
                  'median signed %.0f%%' % (100 * statistics.median(part)))
