#!/usr/bin/env bash
# Plots a learning curve CSV written by sim/run_simulators.py
# (columns: seconds,episode,sim,return,avg_return,version) as a PNG.
#   tools/plot_learning_curve.sh CURVE.csv OUT.png [TITLE] [TARGET]
set -euo pipefail
csv=$1
png=$2
title=${3:-deltaserve CartPole}
target=${4:-475}
command -v gnuplot >/dev/null || { echo "gnuplot not found (apt-get install gnuplot-nox)" >&2; exit 1; }
gnuplot <<GNUPLOT
set terminal pngcairo size 1000,600 font ",11"
set output "${png}"
set datafile separator ","
set key top left
set title "${title}"
set xlabel "seconds since the first episode"
set ylabel "episode return"
set yrange [0:520]
set grid
plot "${csv}" using 1:4 every ::1 with points pt 7 ps 0.25 lc rgb "#b0b0b0" title "episode return", \
     "${csv}" using 1:5 every ::1 with lines lw 2 lc rgb "#1f77b4" title "average of last 100", \
     ${target} with lines dt 2 lc rgb "#d62728" title "target ${target}"
GNUPLOT
