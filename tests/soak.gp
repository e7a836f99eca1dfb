# Plots the soak's samples (make soak): RSS and connections over time.
# gnuplot -e "csv='target/soak/soak.csv'; png='target/soak/soak.png'" tests/soak.gp
set datafile separator ","
set terminal pngcairo size 1000,520 font ",10"
set output png
set title "xvs soak: resident memory and connections"
set xlabel "minutes"
set ylabel "RSS (MiB)"
set y2label "connections"
set ytics nomirror
set y2tics
set yrange [0:*]
set y2range [0:*]
set key bottom right
set grid
plot csv using ($1/60):($2/1024) every ::1 with linespoints lw 2 title "RSS of xvs run (MiB)", \
     csv using ($1/60):3 every ::1 axes x1y2 with linespoints lw 2 title "connections"
