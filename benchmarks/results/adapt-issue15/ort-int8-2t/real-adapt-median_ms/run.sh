#!/bin/bash
# issue 15 for real on ort INT8 2 threads by the median sample: a fresh store, N = 50 blocks + 5 subnets,
# then the adapted predictor checked against the stored timings of the 50 validation subnets (3 runs and their pool)
export PYTHONPATH=/work/gt2/bench5 SPACEEVO_HOME=/work/gt2/real2t/home
S=/work/main/.venv/bin/spaceevo GT=/work/gt O=/work/gt2/real2t
cd $O
/usr/bin/time -f "%e s" $S adapt --backend ort --dtype int8 --threads 2 --device ort-amd-epyc-2t \
  --from $GT/ort-int8-1t/local-median_ms.pred --from $GT/ort-fp32-1t/local-median_ms.pred \
  --from $GT/tflite-int8-1t/local-median_ms.pred --from $GT/tflite-fp32-1t/local-median_ms.pred --from vnni-ort-int8 \
  --cross-dtype --budget 50 --subnets 5 --space onnxw-151122-023231 --resolution 160 --target median_ms \
  --db $O/adapt.db -o $O/adapted50.json.gz --json --no-progress > $O/adapt50.json 2> $O/adapt50.err
echo "adapt rc=$?"
for run in A B C ABC; do
  cp $GT/ort-int8-2t/val-$run.db $O/val/$run.db
  timeout 120 $S validate --predictor $O/adapted50.json.gz --space onnxw-151122-023231 --samples 50 --seed 0 \
    --backend ort --dtype int8 --threads 2 --resolution 160 --rounds 20 --db $O/val/$run.db --json --no-progress \
    > $O/val-$run.json 2> $O/val-$run.err
  echo "$run rc=$?"
done
