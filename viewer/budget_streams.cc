#include "viewer/budget_streams.h"

#include <iterator>
#include <utility>

#include "spdlog/spdlog.h"

namespace flexgs::viewer {

float NextBudgetStep(float percent, bool up) {
  static constexpr float kSteps[] = {1, 5, 10, 15, 25, 50, 100};
  if (up) {
    for (float p : kSteps)
      if (p > percent + 0.5f) return p;
    return 100;
  }
  for (int i = static_cast<int>(std::size(kSteps)) - 1; i >= 0; --i)
    if (kSteps[i] < percent - 0.5f) return kSteps[i];
  return 1;
}

BudgetStreams::BudgetStreams(client::SceneClient* client, client::StreamRequest request, client::StreamOptions options)
    : client_(client), request_(std::move(request)), options_(std::move(options)) {
  shown_ = std::make_unique<LevelFeed>();
  shown_->Start(client_, request_, options_);
  shown_ratio_ = request_.ratio.value_or(0);
}

void BudgetStreams::Restart(double ratio) {
  if (next_ == nullptr && shown_ratio_ > 0 && ratio >= shown_ratio_) {
    shown_->Extend(ratio);
    shown_ratio_ = ratio;
    spdlog::info("budget {:.0f}% of the scene: extending the stream held", 100 * ratio);
    return;
  }
  shown_ratio_ = ratio;
  client::StreamRequest r = request_;
  r.memory_bytes.reset();
  r.gaussians.reset();
  r.ratio = ratio;
  next_ = std::make_unique<LevelFeed>();
  next_->Start(client_, r, options_);
  spdlog::info("budget {:.0f}% of the scene: streaming again from the start", 100 * ratio);
}

FeedState BudgetStreams::State() {
  if (!next_) return shown_->state();
  const FeedState n = next_->state();
  const FeedState o = shown_->state();
  const size_t held_new = n.current ? n.current->size() : 0, held_old = o.current ? o.current->size() : 0;
  if (n.done || held_new > held_old) {
    shown_ = std::move(next_);  // the old stream stops (and is joined) here
    spdlog::info("showing the new budget's stream: {} Gaussians held", held_new);
    return n;
  }
  return o;
}

}  // namespace flexgs::viewer
