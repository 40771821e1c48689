"""Fine-tune and evaluate CCLM on image-text retrieval: Multi30K, multilingual MSCOCO, Flickr30K, xFlickr&CO, WIT.

    accelerate launch examples/run_retrieval.py --task xflickrco --data_root ROOT --model_name_or_path MODEL \
        --output_dir OUT --do_train --do_eval --do_predict [--setting zero_shot|few_shot|translate_test] \
        [--languages de,ja] [--num_shots 100] [--train_languages en|de|all] [--skip_bad_samples] \
        [--seeds 0,1,2] [any TrainingArguments flag]

Tasks: multi30k (en de fr cs), mscoco (en zh ja; 1K tests), flickr30k (English 1K test), xflickrco (IGLUE), wit
(IGLUE). Training: ITC + ITM with hard negatives on the English (or --train_languages) captions, the original
hyper-parameters as defaults (`cclm_hf.finetuning.tasks`); checkpoint selection on the dev set's mean recall.
Evaluation: ITC top-k_test then ITM re-ranking, R@1/5/10 both ways and their mean per language, the IGLUE averages
without English; OUT/metrics.json, OUT/metrics.md and the fine-tuned model + processor in OUT.
"""

from cclm_hf.finetuning import RetrievalFamily, run_benchmark


def main(argv=None):
    return run_benchmark(RetrievalFamily(), argv)


if __name__ == "__main__":
    main()
