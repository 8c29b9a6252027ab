#!/bin/bash
# var.sh TAG METHODS LINK DATA GUEST ROUNDS VARIANT... ; variant = base or A+B (RF_X_A=1 RF_X_B=1)
tag=$1 methods=$2 link=$3 data=$4 guest=$5 rounds=$6; shift 6
cd /work/main
for r in $(seq $rounds); do
  for v in "$@"; do
    unset RF_X_NOCAP RF_X_NOCUM RF_X_SMALL1 RF_X_NOHELD
    [ $v != base ] && for e in ${v//+/ }; do export RF_X_$e=1; done
    /tmp/s29/x1/src/control/ramflow bench --methods $methods --link $link --data $data --guest $guest --channels 4 --memory-size 192M --repeat 3 --out /tmp/s29/$tag-$v-$r > /tmp/s29/$tag-$v-$r.log 2>&1
  done
done
