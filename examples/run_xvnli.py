"""Fine-tune and evaluate CCLM on XVNLI (IGLUE visual entailment: image premise, hypothesis in 5 languages).

    accelerate launch examples/run_xvnli.py --task xvnli --data_root ROOT --model_name_or_path MODEL \
        --output_dir OUT --do_train --do_eval --do_predict [--setting zero_shot|few_shot|translate_test] \
        [--languages ar,es] [--num_shots 48] [--skip_bad_samples] [--seeds 0,1,2] [any TrainingArguments flag]

Training: the 3-way classifier on the fused <s> state, cross-entropy, on the English SNLI-VE training set (zero-shot)
or on --num_shots target-language shots from an English-fine-tuned MODEL (few-shot); the original hyper-parameters
as defaults (lr 3e-5, classifier 6e-5, 10 epochs, 10% warm-up); checkpoint selection on the English dev accuracy.
OUT/metrics.json (accuracy per language, the IGLUE average without English), OUT/metrics.md, the model + processor.
"""

from cclm_hf.finetuning import EntailmentFamily, run_benchmark


def main(argv=None):
    return run_benchmark(EntailmentFamily(), argv)


if __name__ == "__main__":
    main()
