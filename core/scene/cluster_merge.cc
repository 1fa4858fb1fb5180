#include "scene/cluster_merge.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>

#include "Eigen/Dense"
#include "absl/strings/str_cat.h"
#include "scene/morton.h"

namespace flexgs {
namespace {

// A static 3-d tree over the representatives' centres; leaves hold a few points.
class PointTree {
 public:
  explicit PointTree(std::vector<float> xyz) : xyz_(std::move(xyz)) {
    const uint32_t n = static_cast<uint32_t>(xyz_.size() / 3);
    order_.resize(n);
    std::iota(order_.begin(), order_.end(), 0u);
    nodes_.reserve(2 * (n / kLeafSize + 1));
    Build(0, n);
    // The points again in tree order, so that a leaf's points are contiguous in memory
    // (the searches read them linearly instead of through order_).
    sorted_.resize(xyz_.size());
    for (uint32_t i = 0; i < n; ++i)
      for (int a = 0; a < 3; ++a) sorted_[3 * i + a] = xyz_[3 * order_[i] + a];
  }

  // The k nearest points to p, nearest first (fewer when the tree has fewer).
  void NearestK(const float* p, int k, std::vector<std::pair<float, uint32_t>>* out) const {
    out->clear();
    SearchK(0, p, k, out);
    std::sort(out->begin(), out->end());
  }

  // The nearest point to p as (squared distance, point index); ties to the lower index.
  uint32_t Nearest(const float* p) const {
    float best_d2 = std::numeric_limits<float>::infinity();
    uint32_t best = std::numeric_limits<uint32_t>::max();
    Search(0, p, &best_d2, &best);
    return best;
  }

 private:
  static constexpr uint32_t kLeafSize = 8;

  struct Node {
    uint32_t lo, hi;    // the points order_[lo, hi)
    int32_t left = -1;  // children, -1 for a leaf
    int32_t right = -1;
    int axis = 0;
    float split = 0;  // the median point's coordinate on `axis`
  };

  int32_t Build(uint32_t lo, uint32_t hi) {
    const int32_t id = static_cast<int32_t>(nodes_.size());
    nodes_.push_back({lo, hi});
    if (hi - lo <= kLeafSize) return id;
    float mn[3], mx[3];
    for (int a = 0; a < 3; ++a) mn[a] = mx[a] = xyz_[3 * order_[lo] + a];
    for (uint32_t i = lo; i < hi; ++i)
      for (int a = 0; a < 3; ++a) {
        mn[a] = std::min(mn[a], xyz_[3 * order_[i] + a]);
        mx[a] = std::max(mx[a], xyz_[3 * order_[i] + a]);
      }
    int axis = 0;
    for (int a = 1; a < 3; ++a)
      if (mx[a] - mn[a] > mx[axis] - mn[axis]) axis = a;
    const uint32_t mid = lo + (hi - lo) / 2;
    std::nth_element(order_.begin() + lo, order_.begin() + mid, order_.begin() + hi, [&](uint32_t a, uint32_t b) {
      const float va = xyz_[3 * a + axis], vb = xyz_[3 * b + axis];
      return va < vb || (va == vb && a < b);
    });
    const float split = xyz_[3 * order_[mid] + axis];
    const int32_t left = Build(lo, mid);
    const int32_t right = Build(mid, hi);
    nodes_[id].left = left;
    nodes_[id].right = right;
    nodes_[id].axis = axis;
    nodes_[id].split = split;
    return id;
  }

  void Search(int32_t id, const float* p, float* best_d2, uint32_t* best) const {
    const Node& node = nodes_[id];
    if (node.left < 0) {
      for (uint32_t i = node.lo; i < node.hi; ++i) {
        const uint32_t k = order_[i];
        const float* q = &sorted_[3 * i];
        const float dx = q[0] - p[0], dy = q[1] - p[1], dz = q[2] - p[2];
        const float d2 = dx * dx + dy * dy + dz * dz;
        if (d2 < *best_d2 || (d2 == *best_d2 && k < *best)) {
          *best_d2 = d2;
          *best = k;
        }
      }
      return;
    }
    // Left holds coordinates <= split, right >= split: visit p's side first, the other
    // only while it may hold a point as near (equal distance too, for the tie rule).
    const float delta = p[node.axis] - node.split;
    const int32_t first = delta < 0 ? node.left : node.right;
    const int32_t second = delta < 0 ? node.right : node.left;
    Search(first, p, best_d2, best);
    if (delta * delta <= *best_d2) Search(second, p, best_d2, best);
  }

  // out is a max-heap of (d2, index) of at most k entries.
  void SearchK(int32_t id, const float* p, int k, std::vector<std::pair<float, uint32_t>>* out) const {
    const Node& node = nodes_[id];
    if (node.left < 0) {
      for (uint32_t i = node.lo; i < node.hi; ++i) {
        const uint32_t j = order_[i];
        const float* q = &sorted_[3 * i];
        const float dx = q[0] - p[0], dy = q[1] - p[1], dz = q[2] - p[2];
        const std::pair<float, uint32_t> c{dx * dx + dy * dy + dz * dz, j};
        if (static_cast<int>(out->size()) < k) {
          out->push_back(c);
          std::push_heap(out->begin(), out->end());
        } else if (c < out->front()) {
          std::pop_heap(out->begin(), out->end());
          out->back() = c;
          std::push_heap(out->begin(), out->end());
        }
      }
      return;
    }
    const float delta = p[node.axis] - node.split;
    const int32_t first = delta < 0 ? node.left : node.right;
    const int32_t second = delta < 0 ? node.right : node.left;
    SearchK(first, p, k, out);
    if (static_cast<int>(out->size()) < k || delta * delta <= out->front().first) SearchK(second, p, k, out);
  }

  std::vector<float> xyz_;     // by point index
  std::vector<float> sorted_;  // by tree position: point order_[i] at 3 i
  std::vector<uint32_t> order_;
  std::vector<Node> nodes_;
};

void ForRange(ThreadPool* pool, size_t n, size_t grain, const std::function<void(size_t, size_t)>& fn) {
  if (pool == nullptr) {
    fn(0, n);
    return;
  }
  pool->ParallelFor(n, grain, [&](size_t b, size_t e, int) { fn(b, e); });
}

// Surface area of an ellipsoid with semi-axes a, b, c (Knud Thomsen's formula, within
// 1.1 % of the exact value), the measure splat-transform and Spark weight merges with.
double EllipsoidArea(double a, double b, double c) {
  constexpr double p = 1.6075;
  const double ap = std::pow(a, p), bp = std::pow(b, p), cp = std::pow(c, p);
  return 4.0 * M_PI * std::pow((ap * bp + ap * cp + bp * cp) / 3.0, 1.0 / p);
}

double Sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

absl::Status CheckRepresentatives(const GaussianCloud& cloud, absl::Span<const uint32_t> reps) {
  if (reps.empty()) return absl::InvalidArgumentError("no representatives to merge into");
  std::vector<bool> seen(cloud.size(), false);
  for (uint32_t r : reps) {
    if (r >= cloud.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("representative ", r, " is out of range (the cloud has ", cloud.size(), " Gaussians)"));
    }
    if (seen[r]) return absl::InvalidArgumentError(absl::StrCat("representative ", r, " is listed twice"));
    seen[r] = true;
  }
  return absl::OkStatus();
}

}  // namespace

Eigen::Matrix3d GaussianCovariance(const GaussianCloud& cloud, size_t i) {
  const float* q = &cloud.rotations[4 * i];
  Eigen::Quaterniond quat(q[0], q[1], q[2], q[3]);
  if (quat.norm() < 1e-12) quat = Eigen::Quaterniond::Identity();
  const Eigen::Matrix3d R = quat.normalized().toRotationMatrix();
  const Eigen::Vector3d var(std::exp(2.0 * cloud.log_scales[3 * i]), std::exp(2.0 * cloud.log_scales[3 * i + 1]),
                            std::exp(2.0 * cloud.log_scales[3 * i + 2]));
  return R * var.asDiagonal() * R.transpose();
}

absl::StatusOr<std::vector<uint32_t>> NearestRepresentative(const GaussianCloud& cloud,
                                                            absl::Span<const uint32_t> representatives,
                                                            const MergeOptions& options, ThreadPool* pool) {
  if (absl::Status s = CheckRepresentatives(cloud, representatives); !s.ok()) return s;
  std::vector<float> xyz(3 * representatives.size());
  for (size_t k = 0; k < representatives.size(); ++k)
    for (int a = 0; a < 3; ++a) xyz[3 * k + a] = cloud.positions[3 * representatives[k] + a];
  const PointTree tree(std::move(xyz));
  std::vector<uint32_t> nearest(cloud.size());
  const int candidates = std::max(1, options.candidates);
  std::vector<double> alpha;  // activated once: each Gaussian is a candidate's peer many times
  if (options.opacity_weight != 0) {
    alpha.resize(cloud.size());
    ForRange(pool, cloud.size(), 8192, [&](size_t b, size_t e) {
      for (size_t i = b; i < e; ++i) alpha[i] = Sigmoid(cloud.opacity_logits[i]);
    });
  }
  // Queries in Morton order of the representatives' box: consecutive queries then walk
  // the same branches and leaves of the tree, which stay in cache.
  std::array<float, 3> lo, hi;
  for (int a = 0; a < 3; ++a) lo[a] = hi[a] = cloud.positions[3 * representatives[0] + a];
  for (uint32_t r : representatives)
    for (int a = 0; a < 3; ++a) {
      lo[a] = std::min(lo[a], cloud.positions[3 * r + a]);
      hi[a] = std::max(hi[a], cloud.positions[3 * r + a]);
    }
  std::vector<std::pair<uint64_t, uint32_t>> queries(cloud.size());
  ForRange(pool, cloud.size(), 8192, [&](size_t b, size_t e) {
    for (size_t i = b; i < e; ++i) queries[i] = {MortonCode(&cloud.positions[3 * i], lo, hi), static_cast<uint32_t>(i)};
  });
  std::sort(queries.begin(), queries.end());
  ForRange(pool, cloud.size(), 2048, [&](size_t b, size_t e) {
    std::vector<std::pair<float, uint32_t>> knn;
    for (size_t q = b; q < e; ++q) {
      const size_t i = queries[q].second;
      if ((options.colour_weight == 0 && options.opacity_weight == 0) || candidates == 1) {
        nearest[i] = tree.Nearest(&cloud.positions[3 * i]);
        continue;
      }
      // Among the nearest few by centre, the one that is near in space *relative to
      // the nearest* and close in base colour and opacity: a dark string next to a
      // bright body joins a string representative rather than smearing the body's
      // colour, a faint halo a faint one rather than thickening a solid surface.
      tree.NearestK(&cloud.positions[3 * i], candidates, &knn);
      const double d1 = std::max<double>(knn[0].first, 1e-30);
      double best = std::numeric_limits<double>::infinity();
      for (auto [d2, k] : knn) {
        const uint32_t r = representatives[k];
        double dc = 0;
        for (int c = 0; c < 3; ++c) {
          const double d = double{cloud.sh_dc[3 * i + c]} - cloud.sh_dc[3 * r + c];
          dc += d * d;
        }
        const double da = alpha.empty() ? 0.0 : alpha[i] - alpha[r];
        const double cost = d2 / d1 + options.colour_weight * dc + options.opacity_weight * da * da;
        if (cost < best) {  // knn is sorted by (distance, index): ties keep the nearer
          best = cost;
          nearest[i] = k;
        }
      }
    }
  });
  // A representative is its own nearest even where another shares its centre.
  for (size_t k = 0; k < representatives.size(); ++k) nearest[representatives[k]] = static_cast<uint32_t>(k);
  return nearest;
}

namespace {

// The clusters of an assignment (entry i: the position in `representatives` Gaussian i
// joins), each moment-matched into one Gaussian; a cluster of one is kept bit for bit.
// Each Gaussian's merge weight: opacity x ellipsoid surface area (the ink it puts on
// screen from any side), plus a floor so that a cluster of transparent ones still averages.
std::vector<double> InkWeights(const GaussianCloud& cloud, ThreadPool* pool) {
  std::vector<double> ink(cloud.size());
  ForRange(pool, cloud.size(), 4096, [&](size_t b, size_t e) {
    for (size_t i = b; i < e; ++i) {
      const double area = EllipsoidArea(std::exp(cloud.log_scales[3 * i]), std::exp(cloud.log_scales[3 * i + 1]),
                                        std::exp(cloud.log_scales[3 * i + 2]));
      ink[i] = Sigmoid(cloud.opacity_logits[i]) * area + 1e-30;
    }
  });
  return ink;
}

// `ink` holds each Gaussian's merge weight (InkWeights).
GaussianCloud MergeWithAssignment(const GaussianCloud& cloud, absl::Span<const uint32_t> representatives,
                                  const std::vector<uint32_t>& assignment, const std::vector<double>& ink,
                                  ThreadPool* pool) {
  const size_t m = representatives.size();
  // Members of each cluster, contiguous (counting sort by cluster, index order inside).
  std::vector<uint32_t> start(m + 1, 0);
  for (uint32_t c : assignment) ++start[c + 1];
  for (size_t k = 0; k < m; ++k) start[k + 1] += start[k];
  std::vector<uint32_t> members(cloud.size());
  {
    std::vector<uint32_t> fill(start.begin(), start.end() - 1);
    for (size_t i = 0; i < cloud.size(); ++i) members[fill[assignment[i]]++] = static_cast<uint32_t>(i);
  }

  GaussianCloud out = cloud.Gather(representatives);
  const int rest = cloud.rest_coeffs();
  ForRange(pool, m, 64, [&](size_t b, size_t e) {
    std::vector<double> sh;
    for (size_t k = b; k < e; ++k) {
      const uint32_t* mem = &members[start[k]];
      const size_t count = start[k + 1] - start[k];
      if (count == 1) continue;  // the representative alone: kept bit for bit
      double total = 0;
      Eigen::Vector3d mean = Eigen::Vector3d::Zero();
      for (size_t j = 0; j < count; ++j) {
        const uint32_t i = mem[j];
        total += ink[i];
        mean +=
            ink[i] * Eigen::Vector3d(cloud.positions[3 * i], cloud.positions[3 * i + 1], cloud.positions[3 * i + 2]);
      }
      mean /= total;
      Eigen::Matrix3d cov = Eigen::Matrix3d::Zero();
      for (size_t j = 0; j < count; ++j) {
        const uint32_t i = mem[j];
        const Eigen::Vector3d d =
            Eigen::Vector3d(cloud.positions[3 * i], cloud.positions[3 * i + 1], cloud.positions[3 * i + 2]) - mean;
        cov += ink[i] * (GaussianCovariance(cloud, i) + d * d.transpose());
      }
      cov /= total;
      Eigen::SelfAdjointEigenSolver<Eigen::Matrix3d> eig;
      eig.computeDirect(cov);
      Eigen::Matrix3d V = eig.eigenvectors();
      if (V.determinant() < 0) V.col(0) = -V.col(0);
      Eigen::Vector3d s;
      for (int a = 0; a < 3; ++a) s[a] = std::sqrt(std::max(eig.eigenvalues()[a], 1e-18));
      const Eigen::Quaterniond rot(V);
      const double alpha = std::min(1.0, total / std::max(EllipsoidArea(s[0], s[1], s[2]), 1e-30));
      const double logit = std::log(alpha) - std::log1p(-std::min(alpha, 1.0 - 1e-12));

      for (int a = 0; a < 3; ++a) {
        out.positions[3 * k + a] = static_cast<float>(mean[a]);
        out.log_scales[3 * k + a] = static_cast<float>(std::log(s[a]));
      }
      const Eigen::Quaterniond qn = rot.normalized();
      out.rotations[4 * k] = static_cast<float>(qn.w());
      out.rotations[4 * k + 1] = static_cast<float>(qn.x());
      out.rotations[4 * k + 2] = static_cast<float>(qn.y());
      out.rotations[4 * k + 3] = static_cast<float>(qn.z());
      out.opacity_logits[k] =
          static_cast<float>(std::clamp(logit, -double{kOpacityLogitLimit}, double{kOpacityLogitLimit}));
      const int width = 3 + 3 * rest;
      sh.assign(width, 0.0);
      for (size_t j = 0; j < count; ++j) {
        const uint32_t i = mem[j];
        for (int c = 0; c < 3; ++c) sh[c] += ink[i] * cloud.sh_dc[3 * i + c];
        for (int c = 0; c < 3 * rest; ++c) sh[3 + c] += ink[i] * cloud.sh_rest[3 * rest * i + c];
      }
      for (int c = 0; c < 3; ++c) out.sh_dc[3 * k + c] = static_cast<float>(sh[c] / total);
      for (int c = 0; c < 3 * rest; ++c) out.sh_rest[3 * rest * k + c] = static_cast<float>(sh[3 + c] / total);
    }
  });
  return out;
}

// One refinement pass of MergeIntoRepresentatives: the new assignment given the merge of
// the current one.
std::vector<uint32_t> ReassignByLikelihood(const GaussianCloud& cloud, absl::Span<const uint32_t> representatives,
                                           const GaussianCloud& merged, const MergeOptions& options, ThreadPool* pool) {
  const size_t m = representatives.size();
  std::vector<Eigen::Matrix3d> precision(m);
  std::vector<double> log_det(m);
  for (size_t k = 0; k < m; ++k) {
    const Eigen::Quaterniond q(merged.rotations[4 * k], merged.rotations[4 * k + 1], merged.rotations[4 * k + 2],
                               merged.rotations[4 * k + 3]);
    const Eigen::Matrix3d R = q.normalized().toRotationMatrix();
    Eigen::Vector3d inverse_variance;
    log_det[k] = 0;
    for (int a = 0; a < 3; ++a) {
      inverse_variance[a] = std::exp(-2.0 * merged.log_scales[3 * k + a]);
      log_det[k] += 2.0 * merged.log_scales[3 * k + a];
    }
    precision[k] = R * inverse_variance.asDiagonal() * R.transpose();
  }
  const PointTree tree(merged.positions);
  const int candidates = std::max(1, options.candidates);
  std::vector<uint32_t> assignment(cloud.size());
  ForRange(pool, cloud.size(), 2048, [&](size_t b, size_t e) {
    std::vector<std::pair<float, uint32_t>> knn;
    for (size_t i = b; i < e; ++i) {
      tree.NearestK(&cloud.positions[3 * i], candidates, &knn);
      double best = std::numeric_limits<double>::infinity();
      for (auto [d2, k] : knn) {
        const Eigen::Vector3d d(double{cloud.positions[3 * i]} - merged.positions[3 * k],
                                double{cloud.positions[3 * i + 1]} - merged.positions[3 * k + 1],
                                double{cloud.positions[3 * i + 2]} - merged.positions[3 * k + 2]);
        double dc = 0;
        for (int c = 0; c < 3; ++c) {
          const double x = double{cloud.sh_dc[3 * i + c]} - merged.sh_dc[3 * k + c];
          dc += x * x;
        }
        const double cost = d.dot(precision[k] * d) + 0.5 * log_det[k] + options.colour_weight * dc;
        if (cost < best) {  // knn is sorted by (distance, index): ties keep the nearer
          best = cost;
          assignment[i] = k;
        }
      }
    }
  });
  for (size_t k = 0; k < m; ++k) assignment[representatives[k]] = static_cast<uint32_t>(k);
  return assignment;
}

}  // namespace

absl::StatusOr<GaussianCloud> MergeIntoRepresentatives(const GaussianCloud& cloud,
                                                       absl::Span<const uint32_t> representatives,
                                                       const MergeOptions& options, ThreadPool* pool) {
  auto nearest = NearestRepresentative(cloud, representatives, options, pool);
  if (!nearest.ok()) return nearest.status();
  const std::vector<double> ink = InkWeights(cloud, pool);  // once: every pass merges with it
  // Hard-EM refinement: each Gaussian moves to the merged Gaussian under which its centre
  // is most likely (squared Mahalanobis distance + log-determinant of the merged
  // covariance, plus the colour term against the merged colour) among the merged
  // Gaussians with the `candidates` nearest centres, and the clusters are merged again.
  // The first assignment is isotropic; these passes let clusters follow the surfaces
  // their members lie on.
  for (int pass = 0; pass < options.refine_passes; ++pass) {
    *nearest = ReassignByLikelihood(cloud, representatives,
                                    MergeWithAssignment(cloud, representatives, *nearest, ink, pool), options, pool);
  }
  return MergeWithAssignment(cloud, representatives, *nearest, ink, pool);
}

}  // namespace flexgs
