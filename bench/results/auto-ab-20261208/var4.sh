#!/bin/bash
# var4.sh TAG LINK DATA GUEST SIZE ROUNDS BASEMETHODS VARIANT... ; base = main build (BASEMETHODS incl. auto); RWND = fix build; CAL = fix build + RF_X_CAL
tag=$1 link=$2 data=$3 guest=$4 size=$5 rounds=$6 bm=$7; shift 7
export SILESIA_DIR=/work/shared/corpus/silesia
cd /work/main
for r in $(seq $rounds); do
  for v in "$@"; do
    unset RF_X_CAL
    bin=/tmp/s31/fix/build/src/control/ramflow; m=auto
    case $v in
      base) bin=/work/main/build/src/control/ramflow; m=$bm;;
      RWND) ;;
      CAL) export RF_X_CAL=1;;
    esac
    $bin bench --methods $m --link $link --data $data --guest $guest --channels 4 --memory-size $size --repeat 3 $EXTRA --out /tmp/s31/$tag-$v-$r > /tmp/s31/$tag-$v-$r.log 2>&1
  done
done
