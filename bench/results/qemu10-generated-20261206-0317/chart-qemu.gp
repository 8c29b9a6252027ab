set terminal svg size 2400,420 dynamic font 'sans,11' background rgb 'white'
set output '/work/main/bench/results/qemu10-generated-20261206-0317/chart-qemu.svg'
set multiplot layout 1,2 title "ramflow vs QEMU 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1) (tcg): 1024 MiB image, loopback, median of 3, runs interleaved" noenhanced
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set yrange [0:*]
set xtics rotate by -35 noenhanced font ',9'
set key top left horizontal samplen 1
set title 'time (s)'
plot '/work/main/bench/results/qemu10-generated-20261206-0317/chart-qemu.dat' using 2:xtic(1) title 'ramflow' lc rgb '#2ca02c', '' using 3 title 'QEMU' lc rgb '#7f7f7f'
set title 'CPU-seconds, both sides'
plot '/work/main/bench/results/qemu10-generated-20261206-0317/chart-qemu.dat' using 4:xtic(1) title 'ramflow' lc rgb '#2ca02c', '' using 5 title 'QEMU' lc rgb '#7f7f7f'
unset multiplot
