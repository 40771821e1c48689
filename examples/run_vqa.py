"""Fine-tune and evaluate CCLM on xGQA (IGLUE question answering, GQA-trained) and VQA v2 (English).

    accelerate launch examples/run_vqa.py --task xgqa|vqa --data_root ROOT --model_name_or_path MODEL \
        --output_dir OUT --do_train --do_eval --do_predict [--setting zero_shot|few_shot] [--languages de,zh] \
        [--num_shots 48] [--answer_list FILE] [--k_test 128] [--skip_bad_samples] [--seeds 0,1,2] \
        [any TrainingArguments flag]

Training: CCLMForQuestionAnswering (the question through all text layers with the image; a causal answer decoder
attending to it, from a pre-training MODEL a copy of the fusion layers, embeddings and MLM head), the original loss
(each answer's summed NLL times its weight, summed, / batch), the flip that skips questions mentioning left/right; the
original hyper-parameters as defaults (lr 3e-5, 5 epochs, 10% warm-up). Evaluation ranks the candidate answers
(`trainval_ans2label.json` keys for xGQA): the k_test answers with the most probable first token, re-ranked by their
full likelihood; checkpoint selection on the GQA / VQA validation accuracy. xGQA: accuracy per language (exact match),
the IGLUE average without English; VQA v2: the official accuracy, and for test-dev (no answers in the file) the
submission file OUT/vqa_submission_en.json ([{"question_id": int, "answer": str}]).
"""

from cclm_hf.finetuning import VQAFamily, run_benchmark


def main(argv=None):
    return run_benchmark(VQAFamily(), argv)


if __name__ == "__main__":
    main()
