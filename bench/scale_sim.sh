#!/usr/bin/env bash
# The serving target of issue 10 in one run: `mlops scale-sim` on each trace (the committed one
# and any given as arguments) at start-up delays of 3 and 10 minutes, at the rate multiplier
# where hpa-seed's peak reaches 6–8 replicas (searched from --rate-scale 1 upwards and
# downwards), then the sensitivity to ±30% on the profile's step-time coefficients.
# Usage: bench/scale_sim.sh MLOPS_BINARY [TRACE.csv ...]
set -euo pipefail
mlops=$1; shift
traces=("samples/traces/azure_conv_2023.csv" "$@")
profile=${PROFILE:-llama-3-70b-tp4-h100}

peak() { # the hpa-seed peak at a rate
  "$mlops" scale-sim --trace "$1" --profile "$profile" --rate-scale "$2" --start-delay 180 \
    --policy hpa-seed | awk '$1 == "hpa-seed" { print $NF }'
}

for trace in "${traces[@]}"; do
  rate=""
  for r in 1 0.8 1.2 0.6 1.5 0.4 2 0.3 3 0.2 4 0.1; do
    p=$(peak "$trace" "$r")
    if [ "$p" -ge 6 ] && [ "$p" -le 8 ]; then rate=$r; break; fi
  done
  if [ -z "$rate" ]; then echo "$trace: no rate puts hpa-seed's peak at 6-8 replicas"; continue; fi
  for delay in 180 600; do
    for step in 1 0.7 1.3; do
      echo "== $trace, rate x$rate (hpa-seed peak $(peak "$trace" "$rate")), start-up ${delay} s, step-time x$step"
      "$mlops" scale-sim --trace "$trace" --profile "$profile" --rate-scale "$rate" \
        --start-delay "$delay" --step-scale "$step" | tail -n +2
    done
  done
done
