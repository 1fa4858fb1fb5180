// Morton (Z-order) codes: positions in a box interleaved bit by bit, so that sorting by
// code puts spatial neighbours next to each other (the planner's send order, the codec's
// tight block bounds) and the cells of every octree level are runs of equal prefixes
// (coverage in elastic_selection.h).
#pragma once

#include <array>
#include <cstdint>

namespace flexgs {

// Morton code of a position inside [lo, hi], 21 bits per axis (63 bits; x in bit 0).
// Coordinates outside the box clamp to it; non-finite ones and flat axes map to 0.
uint64_t MortonCode(const float* p, const std::array<float, 3>& lo, const std::array<float, 3>& hi);

}  // namespace flexgs
