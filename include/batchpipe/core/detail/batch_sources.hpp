#pragma once
// The sources a run's batches come from, chained: the prefetcher (batches made from a dataset on
// the arena), a merge of several pipelines' batches, a re-cut of a stream into batches of another
// size (rebatch), and the steps that run on the consumer after a merge or a rebatch. BatchStream
// pulls from the last of the chain. Every source drops the batches an action skipped and counts
// them, so what reaches the stream is only what is to be delivered.

#include <batchpipe/core/detail/prefetcher.hpp>
#include <batchpipe/core/detail/run_context.hpp>
#include <batchpipe/core/error.hpp>
#include <batchpipe/core/index.hpp>
#include <batchpipe/core/random.hpp>
#include <batchpipe/detail/access.hpp>
#include <batchpipe/detail/strings.hpp>
#include <batchpipe/detail/type_name.hpp>

#include <ATen/core/Tensor.h>
#include <ATen/ops/cat.h>

#include <any>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace batchpipe::detail {

/// Where the batches of a run come from.
template <class B>
class BatchSource {
 public:
  virtual ~BatchSource() = default;
  /// The next batch to deliver (never a skipped one), or nothing at the end.
  virtual std::optional<B> next() = 0;
  /// Batches dropped because an action skipped them, here and upstream.
  virtual std::size_t skipped() const = 0;
  /// Runs f on the consumer's thread with the run's thread settings (inside its arena).
  virtual void on_consumer(const std::function<void()>& f) = 0;
  /// Hands back the consumer's thread settings until the next call to next().
  virtual void pause() = 0;
};

template <class B>
using BatchSourcePtr = std::unique_ptr<BatchSource<B>>;

/// Batches made from a dataset by a Prefetcher.
template <class B>
class PrefetchedBatches final : public BatchSource<B> {
 public:
  explicit PrefetchedBatches(std::unique_ptr<Prefetcher<B>> prefetcher)
      : prefetcher_(std::move(prefetcher)) {}
  std::optional<B> next() override {
    auto batch = prefetcher_->next();
    while (batch && batch->skipped()) {
      ++skipped_;
      batch = prefetcher_->next();
    }
    return batch;
  }
  std::size_t skipped() const override { return skipped_; }
  void on_consumer(const std::function<void()>& f) override { prefetcher_->run_on_consumer(f); }
  void pause() override { prefetcher_->pause(); }

 private:
  std::unique_ptr<Prefetcher<B>> prefetcher_;
  std::size_t skipped_ = 0;
};

/// Steps run on the consumer's thread, batch after batch, on what comes from upstream.
template <class B>
class ConsumerSteps final : public BatchSource<B> {
 public:
  using Steps = std::function<void(B&)>;
  ConsumerSteps(BatchSourcePtr<B> upstream, Steps steps)
      : upstream_(std::move(upstream)), steps_(std::move(steps)) {}
  std::optional<B> next() override {
    while (auto batch = upstream_->next()) {
      upstream_->on_consumer([&] { steps_(*batch); });
      if (!batch->skipped()) return batch;
      ++skipped_;
    }
    return std::nullopt;
  }
  std::size_t skipped() const override { return skipped_ + upstream_->skipped(); }
  void on_consumer(const std::function<void()>& f) override { upstream_->on_consumer(f); }
  void pause() override { upstream_->pause(); }

 private:
  BatchSourcePtr<B> upstream_;
  Steps steps_;
  std::size_t skipped_ = 0;
};

/// The positions in `target` of the items of `index`, found by id; an Error names an id that
/// `target` lacks.
inline std::vector<std::size_t> positions_of(const Index& index, const Index& target,
                                             const std::string& who) {
  std::vector<std::size_t> positions;
  positions.reserve(index.size());
  for (std::size_t i = 0; i < index.size(); ++i) {
    const Id id = index.id(i);
    if (!target.contains(id)) {
      throw Error(who + ": item '" + to_string(id) + "' (position " + std::to_string(i) +
                  " of the batch) is not in the joined dataset (" + std::to_string(target.size()) +
                  " items)");
    }
    positions.push_back(target.position(id));
  }
  return positions;
}

/// Sets what the library keeps in a batch it makes: its number, epoch, random stream, context.
template <class B>
void number_batch(B& batch, std::size_t number, std::size_t epoch, std::uint64_t seed,
                  RunContextPtr context) {
  access::number(batch) = number;
  access::epoch(batch) = epoch;
  access::random(batch) = Random(derive_seed(seed, number));
  access::context(batch) = std::move(context);
}

/// Checks that `parts` can be concatenated or cut: the same components in each, every one a
/// tensor with one row per item. An Error names the component and what is wrong.
template <class B>
void check_concatenable(std::vector<B>& parts, const std::string& who) {
  auto names = [](auto& components) {
    return join_names(components, [](const auto& entry) { return entry.first; });
  };
  auto& first = access::components(parts.front());
  for (auto& part : parts) {
    auto& components = access::components(part);
    if (components.size() != first.size()) {
      throw Error(who + ": batch " + std::to_string(part.number()) + " has components (" + names(components) +
                  ") where batch " + std::to_string(parts.front().number()) + " has (" + names(first) + ")");
    }
    for (auto& [name, value] : first) {
      auto found = components.find(name);
      if (found == components.end()) {
        throw Error(who + ": batch " + std::to_string(part.number()) + " has no component '" + name +
                    "' that batch " + std::to_string(parts.front().number()) +
                    " has (components: " + names(components) + ")");
      }
      const auto* tensor = std::any_cast<at::Tensor>(&found->second);
      if (!tensor) {
        throw Error(who + ": component '" + name + "' holds " + type_name(found->second.type()) +
                    "; only tensor components can be concatenated");
      }
      if (tensor->dim() == 0 || tensor->size(0) != static_cast<int64_t>(part.size())) {
        throw Error(who + ": component '" + name + "' of shape " + shape_string(tensor->sizes()) +
                    " has not one row per item (batch of " + std::to_string(part.size()) +
                    "); only per-item tensors can be re-cut");
      }
    }
  }
}

/// One batch of the items of `parts`, in order: the index concatenated, each tensor component
/// concatenated along its first dimension. Every part must have the same components, all
/// tensors; an Error names the component and the parts' shapes otherwise.
template <class B>
B concatenate_batches(std::vector<B>& parts, const std::string& who) {
  check_concatenable(parts, who);
  if (parts.size() == 1) return std::move(parts.front());
  B whole{};
  access::epoch(whole) = parts.front().epoch();
  access::context(whole) = access::context(parts.front());
  std::vector<Index> indexes;
  for (auto& part : parts) indexes.push_back(part.index());
  access::index(whole) = Index::concatenated(indexes);
  for (auto& [name, value] : access::components(parts.front())) {
    std::vector<at::Tensor> pieces;
    for (auto& part : parts)
      pieces.push_back(std::any_cast<at::Tensor&>(access::components(part).find(name)->second));
    try {
      whole.set(name, at::cat(pieces, 0));
    } catch (...) {
      std::string shapes;
      for (const auto& piece : pieces) shapes += (shapes.empty() ? "" : ", ") + shape_string(piece.sizes());
      throw Error(who + ": component '" + name + "' cannot be concatenated: shapes " + shapes);
    }
  }
  return whole;
}

/// The first `n` items of `batch` as a batch (tensor components narrowed, other components
/// copied), and `batch` keeps the rest.
template <class B>
B take_front(B& batch, std::size_t n) {
  B front{};
  std::vector<std::size_t> head(n), tail(batch.size() - n);
  for (std::size_t i = 0; i < n; ++i) head[i] = i;
  for (std::size_t i = 0; i < tail.size(); ++i) tail[i] = n + i;
  access::index(front) = batch.index().subset_unchecked(head);
  access::index(batch) = batch.index().subset_unchecked(tail);
  for (auto& [name, value] : access::components(batch)) {
    auto& tensor = std::any_cast<at::Tensor&>(value);  // checked by concatenate_batches
    const auto rows = static_cast<int64_t>(n);
    front.set(name, tensor.narrow(0, 0, rows));
    tensor = tensor.narrow(0, rows, tensor.size(0) - rows);
  }
  return front;
}

/// The stream re-cut into batches of `size` items, in arrival order. An epoch's items are never
/// mixed with the next epoch's: its last batch is the remainder (dropped with drop_last).
/// `gives_nothing`: the run's epochs, as planned, hold fewer items than `size` and drop them: an
/// endless run would pull epoch after epoch without ever delivering, so it ends at once, as the
/// sampler's does.
template <class B>
class Rebatcher final : public BatchSource<B> {
 public:
  Rebatcher(BatchSourcePtr<B> upstream, std::size_t size, bool drop_last, bool gives_nothing,
            std::uint64_t seed)
      : upstream_(std::move(upstream)),
        size_(size),
        drop_last_(drop_last),
        seed_(seed),
        upstream_ended_(gives_nothing) {}

  std::optional<B> next() override {
    while (true) {
      if (pending_items_ >= size_) return cut(size_);
      if (!upstream_ended_) {
        auto batch = upstream_->next();
        if (!batch) {
          upstream_ended_ = true;
        } else if (!pending_.empty() && batch->epoch() != pending_.front().epoch()) {
          carried_ = std::move(batch);  // the epoch's remainder goes first
        } else {
          add(std::move(*batch));
          continue;
        }
      }
      // The end of an epoch (or of the run): its remainder, unless dropped.
      std::optional<B> remainder;
      if (pending_items_ > 0 && !drop_last_) remainder = cut(pending_items_);
      pending_.clear();
      pending_items_ = 0;
      if (carried_) {
        add(std::move(*carried_));
        carried_.reset();
      }
      if (remainder) return remainder;
      if (upstream_ended_ && pending_.empty()) return std::nullopt;
    }
  }
  std::size_t skipped() const override { return upstream_->skipped(); }
  void on_consumer(const std::function<void()>& f) override { upstream_->on_consumer(f); }
  void pause() override { upstream_->pause(); }

 private:
  void add(B batch) {
    if (!context_) context_ = access::context(batch);  // the run's: every batch has the same
    pending_items_ += batch.size();
    pending_.push_back(std::move(batch));
  }

  // The first n pending items as a batch of its own.
  B cut(std::size_t n) {
    const std::size_t epoch = pending_.front().epoch();
    B whole = concatenate_batches(pending_, "rebatch(" + std::to_string(size_) + ")");
    pending_.clear();
    B front = n == whole.size() ? std::move(whole) : take_front(whole, n);
    pending_items_ -= n;
    if (pending_items_ > 0) pending_.push_back(std::move(whole));
    number_batch(front, number_++, epoch, seed_, context_);
    return front;
  }

  BatchSourcePtr<B> upstream_;
  std::size_t size_;
  bool drop_last_;
  std::uint64_t seed_;
  std::vector<B> pending_;
  std::size_t pending_items_ = 0;
  std::optional<B> carried_;
  RunContextPtr context_;
  bool upstream_ended_;
  std::size_t number_ = 0;
};

/// The batches of several pipelines over the same items, side by side: each delivered batch is
/// the first pipeline's, with the components only the others have added. The pipelines must
/// deliver the same items in the same order; an Error names the first difference.
template <class B>
class MergedBatches final : public BatchSource<B> {
 public:
  MergedBatches(std::vector<BatchSourcePtr<B>> inputs, std::uint64_t seed, RunContextPtr context)
      : inputs_(std::move(inputs)), seed_(seed), context_(std::move(context)) {}

  std::optional<B> next() override {
    std::vector<std::optional<B>> batches;
    for (auto& input : inputs_) batches.push_back(input->next());
    for (std::size_t i = 1; i < batches.size(); ++i) {
      if (batches[i].has_value() != batches[0].has_value()) {
        const std::size_t ended = batches[i] ? 0 : i;
        throw Error("merge: pipeline " + std::to_string(ended + 1) + " ended after " +
                    std::to_string(number_) + " batches while pipeline " +
                    std::to_string((ended == 0 ? i : 0) + 1) + " goes on");
      }
    }
    if (!batches[0]) return std::nullopt;
    B& merged = *batches[0];
    for (std::size_t i = 1; i < batches.size(); ++i) {
      check_same_items(merged, *batches[i], i);
      for (auto& [name, value] : access::components(*batches[i]))
        access::components(merged).try_emplace(name, std::move(value));
    }
    number_batch(merged, number_++, merged.epoch(), seed_, context_);
    return std::move(merged);
  }
  // The inputs skip the same batches (or the merge fails): the first one's count is the run's.
  std::size_t skipped() const override { return inputs_.front()->skipped(); }
  // Inside every input's arena, so that each one's workers hold back during the steps; the first
  // input's settings apply.
  void on_consumer(const std::function<void()>& f) override { nested_on_consumer(inputs_.size() - 1, f); }
  void pause() override {
    for (auto& input : inputs_) input->pause();
  }

 private:
  void nested_on_consumer(std::size_t i, const std::function<void()>& f) {
    if (i == 0) return inputs_.front()->on_consumer(f);
    inputs_[i]->on_consumer([&] { nested_on_consumer(i - 1, f); });
  }

  void check_same_items(const B& first, const B& other, std::size_t i) const {
    const Index& a = first.index();
    const Index& b = other.index();
    const std::string where =
        "merge: batch " + std::to_string(number_) + ": pipeline " + std::to_string(i + 1);
    if (a.size() != b.size()) {
      throw Error(
          where + " has " + std::to_string(b.size()) + " items, pipeline 1 has " + std::to_string(a.size()) +
          " (merged pipelines must deliver the same items: the same dataset ids, batch size and order)");
    }
    for (std::size_t position = 0; position < a.size(); ++position) {
      if (a.id(position) != b.id(position)) {
        throw Error(
            where + " has item '" + to_string(b.id(position)) + "' at position " + std::to_string(position) +
            " where pipeline 1 has '" + to_string(a.id(position)) +
            "' (merged pipelines must deliver the same items in the same order; skip after the merge)");
      }
    }
  }

  std::vector<BatchSourcePtr<B>> inputs_;
  std::uint64_t seed_;
  RunContextPtr context_;
  std::size_t number_ = 0;
};

}  // namespace batchpipe::detail
