set terminal svg size 2400,420 dynamic font 'sans,11' background rgb 'white'
set output 'bench/results/qemu72-silesia-20261206-0255/chart-qemu.svg'
set multiplot layout 1,2 title "ramflow vs QEMU 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3) (tcg): 1024 MiB image, loopback, median of 3, runs interleaved" noenhanced
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set yrange [0:*]
set xtics rotate by -35 noenhanced font ',9'
set key top left horizontal samplen 1
set title 'time (s)'
plot 'bench/results/qemu72-silesia-20261206-0255/chart-qemu.dat' using 2:xtic(1) title 'ramflow' lc rgb '#2ca02c', '' using 3 title 'QEMU' lc rgb '#7f7f7f'
set title 'CPU-seconds, both sides'
plot 'bench/results/qemu72-silesia-20261206-0255/chart-qemu.dat' using 4:xtic(1) title 'ramflow' lc rgb '#2ca02c', '' using 5 title 'QEMU' lc rgb '#7f7f7f'
unset multiplot
