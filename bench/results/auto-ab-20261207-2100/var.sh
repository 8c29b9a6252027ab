#!/bin/bash
# var.sh TAG LINK DATA GUEST ROUNDS VARIANT... ; base runs zstd,auto; others auto only with RF_X_<parts>=1
tag=$1 link=$2 data=$3 guest=$4 rounds=$5; shift 5
cd /work/main
for r in $(seq $rounds); do
  for v in "$@"; do
    unset RF_X_SCALE RF_X_SWEEP5 RF_X_TRACE RF_X_STARTZ RF_X_NOSWEEP RF_X_KNOWN3 RF_X_KNOWN3
    m=auto; [ $v = base ] && m=zstd,auto
    [ $v != base ] && for e in ${v//+/ }; do export RF_X_$e=1; done
    /tmp/s30/w/build/src/control/ramflow bench --methods $m --link $link --data $data --guest $guest --channels 4 --memory-size 192M --repeat 3 --out /tmp/s30/$tag-$v-$r > /tmp/s30/$tag-$v-$r.log 2>&1
  done
done
