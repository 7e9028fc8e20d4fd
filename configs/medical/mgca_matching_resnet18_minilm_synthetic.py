# MGCA whose token level grounds words in the image: mgca_resnet18_minilm_synthetic.py with
# MGCA's within-sample token alignment (CTA) replaced by cross-sample local matching
# (LocalMatchingLoss, granularity "word": every word of a report picks its own image among
# the batch's by attending over each image's layer3 patches).
#
# Why: CTA contrasts a word's visual context only with the other words of the same report,
# which giving every word its own place in the grid solves whatever the image shows; on
# the generated set it does not ground words. Matching each word against the batch's
# other images does (results: configs/medical/mgca/README.md).
_base_ = ["./mgca_resnet18_minilm_synthetic.py"]

model = dict(
    local_matching_loss=dict(type="LocalMatchingLoss", attention_temperature=0.1,
                             temperature=0.1, granularity="word"),
    loss_weights=dict(instance=1.0, token=0.0, prototype=1.0, local_matching=1.0),
)
