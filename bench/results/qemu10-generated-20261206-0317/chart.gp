set terminal svg size 1260,360 dynamic font 'sans,11' background rgb 'white'
set output '/work/main/bench/results/qemu10-generated-20261206-0317/chart.svg'
set multiplot layout 1,3 title "ramflow bench: 1024 MiB guest filled with generated mix, idle vCPUs, 2 cores (median of 3)" noenhanced
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set yrange [0:*]
set offsets 0, 0, graph 0.18, 0
set key top left horizontal samplen 1 width -1 font ',9'
set xlabel 'channels'
set title 'time (s), link unlimited' noenhanced
set ylabel 'seconds'
plot '/work/main/bench/results/qemu10-generated-20261206-0317/chart-unlimited.dat' using 2:xtic(1) title 'none, warm' lc rgb '#7f7f7f', '' using 3 title 'none, cold' lc rgb '#7f7f7f', '' using 4 title 'zstd, warm' lc rgb '#2ca02c', '' using 5 title 'zstd, cold' lc rgb '#2ca02c', '' using 6 title 'zlib, warm' lc rgb '#1f77b4', '' using 7 title 'zlib, cold' lc rgb '#1f77b4', '' using 8 title 'qatzip, warm' lc rgb '#d62728', '' using 9 title 'qatzip, cold' lc rgb '#d62728'
set title 'send CPU%, link unlimited' noenhanced
set ylabel '% of one core'
plot '/work/main/bench/results/qemu10-generated-20261206-0317/chart-unlimited.dat' using 10:xtic(1) title 'none, warm' lc rgb '#7f7f7f', '' using 11 title 'none, cold' lc rgb '#7f7f7f', '' using 12 title 'zstd, warm' lc rgb '#2ca02c', '' using 13 title 'zstd, cold' lc rgb '#2ca02c', '' using 14 title 'zlib, warm' lc rgb '#1f77b4', '' using 15 title 'zlib, cold' lc rgb '#1f77b4', '' using 16 title 'qatzip, warm' lc rgb '#d62728', '' using 17 title 'qatzip, cold' lc rgb '#d62728'
set title 'recv CPU%, link unlimited' noenhanced
set ylabel '% of one core'
plot '/work/main/bench/results/qemu10-generated-20261206-0317/chart-unlimited.dat' using 18:xtic(1) title 'none, warm' lc rgb '#7f7f7f', '' using 19 title 'none, cold' lc rgb '#7f7f7f', '' using 20 title 'zstd, warm' lc rgb '#2ca02c', '' using 21 title 'zstd, cold' lc rgb '#2ca02c', '' using 22 title 'zlib, warm' lc rgb '#1f77b4', '' using 23 title 'zlib, cold' lc rgb '#1f77b4', '' using 24 title 'qatzip, warm' lc rgb '#d62728', '' using 25 title 'qatzip, cold' lc rgb '#d62728'
unset multiplot
