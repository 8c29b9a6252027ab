#!/bin/bash
# var2.sh TAG LINK DATA GUEST ROUNDS VARIANT... ; base = HEAD (zstd,auto); MIXA = adaptive mix; M<n> = fixed raw share n permille
tag=$1 link=$2 data=$3 guest=$4 rounds=$5; shift 5
cd /work/main
for r in $(seq $rounds); do
  for v in "$@"; do
    unset RF_X_MIX RF_X_TRACE
    bin=/work/main/build/src/control/ramflow; m=auto
    case $v in
      base) bin=/tmp/s30/w/build/src/control/ramflow; m=zstd,auto;;
      MIXA) ;;
      M*) export RF_X_MIX=${v#M};;
    esac
    $bin bench --methods $m --link $link --data $data --guest $guest --channels 4 --memory-size 192M --repeat 3 --out /tmp/s30/$tag-$v-$r > /tmp/s30/$tag-$v-$r.log 2>&1
  done
done
