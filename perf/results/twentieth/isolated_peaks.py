# Lists the isolated peaks TimeCurve now replaces (a median over twice what both neighbours
# allow) in profiles: python3 isolated_peaks.py PROFILE.h5 ...
import h5py, sys
for path in sys.argv[1:]:
    f = h5py.File(path)
    for tn, t in f['tables'].items():
        keys, off, sizes, med = t['keys'][()], t['offsets'][()], t['sizes'][()], t['median_s'][()]
        for i, k in enumerate(keys):
            xs = sizes[off[i]:off[i+1]]; ts = med[off[i]:off[i+1]]
            for j in range(len(ts) - 1):
                allowed = ts[j+1] if j == 0 else max(ts[j+1], ts[j-1] * xs[j] / xs[j-1])
                if ts[j] > 2 * allowed:
                    print(path.split('/')[-2][-9:], path.split('/')[-1][:12], tn, list(k), f"x={xs[j]} t={ts[j]*1e6:.1f} allowed={allowed*1e6:.1f}", [round(v*1e6,1) for v in ts[max(0,j-2):j+3]])
