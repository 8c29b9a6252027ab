#!/bin/bash
# var3.sh TAG LINK DATA GUEST ROUNDS VARIANT... ; base = main (zstd,auto); MIXP = wip adaptive mix (peak+scale); M<n> = wip fixed share
tag=$1 link=$2 data=$3 guest=$4 rounds=$5; shift 5
export SILESIA_DIR=/work/shared/corpus/silesia
cd /work/main
for r in $(seq $rounds); do
  for v in "$@"; do
    unset RF_X_MIX RF_X_TRACE RF_X_NOSCALE RF_X_NOPEAK
    bin=/tmp/s30/w/build/src/control/ramflow; m=auto
    case $v in
      base) bin=/work/main/build/src/control/ramflow; m=zstd,auto;;
      MIXP) ;;
      NOSCALE) export RF_X_NOSCALE=1;;
      M*) export RF_X_MIX=${v#M};;
    esac
    $bin bench --methods $m --link $link --data $data --guest $guest --channels 4 --memory-size 192M --repeat 3 --out /tmp/s31/$tag-$v-$r > /tmp/s31/$tag-$v-$r.log 2>&1
  done
done
