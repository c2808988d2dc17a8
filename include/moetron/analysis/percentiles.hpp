// Percentiles of latency samples, defined once for the whole project (the results file's
// /summary, the log line, perf/plots.py and perf/study.py all use this definition).
//
// Definition: linear interpolation between the closest ranks, numpy's default
// (`numpy.percentile(x, q, method="linear")`): sort the n samples x[0] <= ... <= x[n-1], let
// h = (n - 1) * q / 100; the percentile is x[floor h] + (h - floor h) * (x[floor h + 1] - x[floor h]).
// So p0 is the minimum, p100 the maximum, p50 of an even count the mean of the middle two.
// No samples: NaN (undefined, never a made-up 0). NaN samples are a caller's bug (refused).
#pragma once
#include <vector>

namespace moetron {

// q in [0, 100]. Throws Error for q outside it or for a NaN sample.
double percentile(std::vector<double> samples, double q);

// Several percentiles of the same samples, sorting once; same definition as above.
std::vector<double> percentiles(std::vector<double> samples, const std::vector<double>& qs);

}  // namespace moetron
