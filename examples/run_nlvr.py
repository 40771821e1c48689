"""Fine-tune and evaluate CCLM on NLVR2 and MaRVL (IGLUE multicultural reasoning: a statement about two images).

    accelerate launch examples/run_nlvr.py --task nlvr2|marvl --data_root ROOT --model_name_or_path MODEL \
        --output_dir OUT --do_train --do_eval --do_predict [--setting zero_shot|few_shot|translate_test] \
        [--languages id,zh] [--num_shots 10] [--skip_bad_samples] [--seeds 0,1,2] [any TrainingArguments flag]

Training: CCLMForImagesAndTextClassification (the fusion layers doubled into left/right pairs that share their
cross-attention key/value weights; from a pre-training MODEL each fusion layer starts as both layers of its pair),
a 2-way classifier on the fused <s> state, cross-entropy, on NLVR2 (English; MaRVL zero-shot) or on --num_shots
MaRVL shots from an NLVR2-fine-tuned MODEL (few-shot); the original hyper-parameters as defaults (lr 3e-5, classifier
6e-5, 10 epochs, 10% warm-up); checkpoint selection on the NLVR2 dev accuracy. MaRVL tests id, sw, ta, tr, zh (and
NLVR2's test as en). OUT/metrics.json (accuracy per language, the IGLUE average without English), OUT/metrics.md, the
model + processor.
"""

from cclm_hf.finetuning import NLVRFamily, run_benchmark


def main(argv=None):
    return run_benchmark(NLVRFamily(), argv)


if __name__ == "__main__":
    main()
