#!/bin/bash
# exp.sh TAG SPLIT SEEDS OVERRIDES_JSON [MODEL]
cd /work/main
.venv/bin/python /tmp/d/gen.py $2 $3 ${5:-/work/main/models/default} $1 "$4" > /tmp/d/log_$1_$2.txt 2>&1
.venv/bin/python /tmp/d/ana.py $2 $1 $3 > /tmp/d/res_$1_$2.txt 2>&1
head -2 /tmp/d/res_$1_$2.txt
