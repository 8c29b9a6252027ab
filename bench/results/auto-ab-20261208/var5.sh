#!/bin/bash
# var5.sh TAG LINK DATA GUEST SIZE ROUNDS "NAME|BIN|METHODS|ENV" ...
tag=$1 link=$2 data=$3 guest=$4 size=$5 rounds=$6; shift 6
export SILESIA_DIR=/work/shared/corpus/silesia
cd /work/main
for r in $(seq $rounds); do
  for spec in "$@"; do
    IFS='|' read -r name bin m envs <<< "$spec"
    env $envs $bin bench --methods $m --link $link --data $data --guest $guest --channels 4 --memory-size $size --repeat 3 $EXTRA --out /tmp/s31/$tag-$name-$r > /tmp/s31/$tag-$name-$r.log 2>&1
  done
done
