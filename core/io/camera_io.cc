#include "io/camera_io.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <system_error>
#include <utility>

#include <spdlog/spdlog.h>
#include <Eigen/Geometry>
#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "base/file_io.h"
#include "base/status_macros.h"

namespace flexgs {
namespace {

namespace fs = std::filesystem;

// The COLMAP binary layout is little-endian and read here with memcpy.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "camera_io assumes a little-endian host");

absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return absl::NotFoundError(absl::StrCat(path, ": file not found"));
  if (fs::is_directory(path, ec)) return absl::InvalidArgumentError(absl::StrCat(path, ": is a directory"));
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open for reading"));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat(path, ": read error"));
  return std::move(ss).str();
}

// ---------------------------------------------------------------------------
// COLMAP

struct ColmapModel {
  int id;
  const char* name;
  int num_params;
  bool supported;  // pinhole, possibly with (ignored) radial/tangential distortion
  bool distorted;
};

// Ids and parameter counts from colmap/src/colmap/sensor/models.h.
constexpr ColmapModel kColmapModels[] = {
    {0, "SIMPLE_PINHOLE", 3, true, false},
    {1, "PINHOLE", 4, true, false},
    {2, "SIMPLE_RADIAL", 4, true, true},
    {3, "RADIAL", 5, true, true},
    {4, "OPENCV", 8, true, true},
    {5, "OPENCV_FISHEYE", 8, false, false},
    {6, "FULL_OPENCV", 12, false, false},
    {7, "FOV", 5, false, false},
    {8, "SIMPLE_RADIAL_FISHEYE", 4, false, false},
    {9, "RADIAL_FISHEYE", 5, false, false},
    {10, "THIN_PRISM_FISHEYE", 12, false, false},
    {11, "RAD_TAN_THIN_PRISM_FISHEYE", 16, false, false},
};

const ColmapModel* FindModel(int id) {
  for (const auto& m : kColmapModels) {
    if (m.id == id) return &m;
  }
  return nullptr;
}

const ColmapModel* FindModel(absl::string_view name) {
  for (const auto& m : kColmapModels) {
    if (name == m.name) return &m;
  }
  return nullptr;
}

struct Intrinsics {
  int width = 0, height = 0;
  double fx = 0, fy = 0, cx = 0, cy = 0;
};

// Shared state of one ReadColmapModel call: the distortion warning is issued once.
struct ParseContext {
  bool warned_distortion = false;
};

absl::StatusOr<Intrinsics> MakeIntrinsics(const std::string& file, int64_t camera_id, const ColmapModel& model,
                                          uint64_t width, uint64_t height, const std::vector<double>& params,
                                          ParseContext* ctx) {
  if (!model.supported) {
    return absl::UnimplementedError(
        absl::StrCat(file, ": camera ", camera_id, " uses unsupported camera model ", model.name,
                     "; 3DGS needs undistorted pinhole images (run `colmap image_undistorter` first)"));
  }
  if (width == 0 || height == 0 || width > 32768 || height > 32768) {
    return absl::InvalidArgumentError(
        absl::StrCat(file, ": camera ", camera_id, " has invalid size ", width, "x", height));
  }
  if (static_cast<int>(params.size()) != model.num_params) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": camera ", camera_id, " (", model.name, ") has ",
                                                   params.size(), " parameters, expected ", model.num_params));
  }
  for (double p : params) {
    if (!std::isfinite(p)) {
      return absl::InvalidArgumentError(absl::StrCat(file, ": camera ", camera_id, " has a non-finite parameter"));
    }
  }
  Intrinsics in;
  in.width = static_cast<int>(width);
  in.height = static_cast<int>(height);
  // SIMPLE_PINHOLE / SIMPLE_RADIAL / RADIAL: f, cx, cy, ...; PINHOLE / OPENCV: fx, fy, cx, cy, ...
  const bool single_focal = model.id == 0 || model.id == 2 || model.id == 3;
  if (single_focal) {
    in.fx = in.fy = params[0];
    in.cx = params[1];
    in.cy = params[2];
  } else {
    in.fx = params[0];
    in.fy = params[1];
    in.cx = params[2];
    in.cy = params[3];
  }
  if (model.distorted && !ctx->warned_distortion) {
    ctx->warned_distortion = true;
    spdlog::warn(
        "{}: camera {} uses model {}; its distortion coefficients are ignored (3DGS expects "
        "undistorted images)",
        file, camera_id, model.name);
  }
  return in;
}

absl::StatusOr<Eigen::Matrix3d> RotationFromQvec(const std::string& file, absl::string_view image_name, double qw,
                                                 double qx, double qy, double qz) {
  const Eigen::Quaterniond q(qw, qx, qy, qz);
  const double n = q.norm();
  if (!std::isfinite(n) || n < 1e-12) {
    return absl::InvalidArgumentError(
        absl::StrCat(file, ": image '", image_name, "' has an invalid quaternion (norm ", n, ")"));
  }
  return q.normalized().toRotationMatrix();
}

// Bounds-checked little-endian reader over an in-memory file.
class ByteReader {
 public:
  explicit ByteReader(absl::string_view data) : data_(data) {}
  size_t offset() const { return pos_; }
  size_t remaining() const { return data_.size() - pos_; }

  template <typename T>
  bool Read(T* out) {
    if (remaining() < sizeof(T)) return false;
    std::memcpy(out, data_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return true;
  }
  bool Skip(uint64_t n) {
    if (n > remaining()) return false;
    pos_ += static_cast<size_t>(n);
    return true;
  }
  // Reads a NUL-terminated string; false if no NUL before the end.
  bool ReadCString(std::string* out) {
    const size_t end = data_.find('\0', pos_);
    if (end == absl::string_view::npos) return false;
    out->assign(data_.data() + pos_, end - pos_);
    pos_ = end + 1;
    return true;
  }

 private:
  absl::string_view data_;
  size_t pos_ = 0;
};

absl::Status Truncated(const std::string& file, const ByteReader& r, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(file, ": truncated file: ", what, " missing at byte ", r.offset(),
                                                 " (", r.remaining(), " bytes left)"));
}

using IntrinsicsMap = std::map<int64_t, Intrinsics>;

absl::StatusOr<IntrinsicsMap> ReadCamerasBin(const std::string& file, ParseContext* ctx) {
  FLEXGS_ASSIGN_OR_RETURN(const std::string data, ReadWholeFile(file));
  ByteReader r(data);
  uint64_t num_cameras = 0;
  if (!r.Read(&num_cameras)) return Truncated(file, r, "num_cameras");
  constexpr size_t kMinRecord = 4 + 4 + 8 + 8;  // + params
  if (num_cameras > r.remaining() / kMinRecord) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": num_cameras ", num_cameras,
                                                   " exceeds what the file can hold (", r.remaining(), " bytes left)"));
  }
  IntrinsicsMap cameras;
  for (uint64_t i = 0; i < num_cameras; ++i) {
    int32_t camera_id = 0, model_id = 0;
    uint64_t width = 0, height = 0;
    if (!r.Read(&camera_id) || !r.Read(&model_id) || !r.Read(&width) || !r.Read(&height)) {
      return Truncated(file, r, absl::StrCat("header of camera #", i));
    }
    const ColmapModel* model = FindModel(model_id);
    if (model == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(file, ": camera ", camera_id, " has unknown camera model id ", model_id));
    }
    std::vector<double> params(model->num_params);
    for (double& p : params) {
      if (!r.Read(&p)) return Truncated(file, r, absl::StrCat("parameters of camera ", camera_id));
    }
    FLEXGS_ASSIGN_OR_RETURN(Intrinsics in, MakeIntrinsics(file, camera_id, *model, width, height, params, ctx));
    if (!cameras.emplace(camera_id, in).second) {
      return absl::InvalidArgumentError(absl::StrCat(file, ": duplicate camera id ", camera_id));
    }
  }
  if (r.remaining() != 0) {
    spdlog::warn("{}: {} unexpected trailing bytes ignored", file, r.remaining());
  }
  return cameras;
}

absl::StatusOr<Camera> MakeCamera(const std::string& file, const IntrinsicsMap& intrinsics, int64_t camera_id,
                                  std::string name, const double q[4], const double t[3]) {
  auto it = intrinsics.find(camera_id);
  if (it == intrinsics.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat(file, ": image '", name, "' references missing camera id ", camera_id));
  }
  Camera cam;
  cam.width = it->second.width;
  cam.height = it->second.height;
  cam.fx = it->second.fx;
  cam.fy = it->second.fy;
  cam.cx = it->second.cx;
  cam.cy = it->second.cy;
  FLEXGS_ASSIGN_OR_RETURN(cam.R, RotationFromQvec(file, name, q[0], q[1], q[2], q[3]));
  cam.t = Eigen::Vector3d(t[0], t[1], t[2]);
  cam.name = std::move(name);
  return cam;
}

absl::StatusOr<std::vector<Camera>> ReadImagesBin(const std::string& file, const IntrinsicsMap& intrinsics) {
  FLEXGS_ASSIGN_OR_RETURN(const std::string data, ReadWholeFile(file));
  ByteReader r(data);
  uint64_t num_images = 0;
  if (!r.Read(&num_images)) return Truncated(file, r, "num_reg_images");
  // Fixed part (64 B) + at least a 1-char name + NUL + num_points2D.
  constexpr size_t kMinRecord = 64 + 2 + 8;
  if (num_images > r.remaining() / kMinRecord) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": num_reg_images ", num_images,
                                                   " exceeds what the file can hold (", r.remaining(), " bytes left)"));
  }
  std::vector<Camera> cameras;
  cameras.reserve(num_images);
  for (uint64_t i = 0; i < num_images; ++i) {
    int32_t image_id = 0, camera_id = 0;
    double q[4], t[3];
    bool ok = r.Read(&image_id);
    for (double& v : q) ok = ok && r.Read(&v);
    for (double& v : t) ok = ok && r.Read(&v);
    ok = ok && r.Read(&camera_id);
    if (!ok) return Truncated(file, r, absl::StrCat("pose of image #", i));
    std::string name;
    if (!r.ReadCString(&name)) {
      return absl::InvalidArgumentError(
          absl::StrCat(file, ": name of image ", image_id, " is not NUL-terminated (truncated file?)"));
    }
    if (name.empty()) return absl::InvalidArgumentError(absl::StrCat(file, ": image ", image_id, " has an empty name"));
    uint64_t num_points2d = 0;
    if (!r.Read(&num_points2d)) return Truncated(file, r, absl::StrCat("num_points2D of image '", name, "'"));
    constexpr uint64_t kPointBytes = 8 + 8 + 8;  // x, y, point3D_id
    if (num_points2d > r.remaining() / kPointBytes) {
      return absl::InvalidArgumentError(absl::StrCat(file, ": image '", name, "' claims ", num_points2d,
                                                     " 2D points but only ", r.remaining(), " bytes are left"));
    }
    r.Skip(num_points2d * kPointBytes);
    FLEXGS_ASSIGN_OR_RETURN(Camera cam, MakeCamera(file, intrinsics, camera_id, std::move(name), q, t));
    cameras.push_back(std::move(cam));
  }
  if (r.remaining() != 0) {
    spdlog::warn("{}: {} unexpected trailing bytes ignored", file, r.remaining());
  }
  return cameras;
}

// Splits a text file into lines, dropping '\r' from CRLF endings.
std::vector<std::string> SplitLines(const std::string& data) {
  std::vector<std::string> lines = absl::StrSplit(data, '\n');
  for (auto& l : lines) {
    if (!l.empty() && l.back() == '\r') l.pop_back();
  }
  return lines;
}

bool IsBlankOrComment(absl::string_view line) {
  line = absl::StripLeadingAsciiWhitespace(line);
  return line.empty() || line[0] == '#';
}

std::vector<absl::string_view> Tokens(absl::string_view line) {
  return absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
}

absl::StatusOr<IntrinsicsMap> ReadCamerasTxt(const std::string& file, ParseContext* ctx) {
  FLEXGS_ASSIGN_OR_RETURN(const std::string data, ReadWholeFile(file));
  const std::vector<std::string> lines = SplitLines(data);
  IntrinsicsMap cameras;
  for (size_t ln = 0; ln < lines.size(); ++ln) {
    if (IsBlankOrComment(lines[ln])) continue;
    const auto where = absl::StrCat(file, ":", ln + 1, ": ");
    const auto tok = Tokens(lines[ln]);
    int64_t camera_id = 0;
    uint64_t width = 0, height = 0;
    if (tok.size() < 4 || !absl::SimpleAtoi(tok[0], &camera_id) || !absl::SimpleAtoi(tok[2], &width) ||
        !absl::SimpleAtoi(tok[3], &height)) {
      return absl::InvalidArgumentError(absl::StrCat(where, "expected CAMERA_ID MODEL WIDTH HEIGHT PARAMS[]"));
    }
    const ColmapModel* model = FindModel(tok[1]);
    if (model == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(where, "unknown camera model '", tok[1], "'"));
    }
    std::vector<double> params;
    for (size_t k = 4; k < tok.size(); ++k) {
      double v = 0;
      if (!absl::SimpleAtod(tok[k], &v)) {
        return absl::InvalidArgumentError(absl::StrCat(where, "invalid camera parameter '", tok[k], "'"));
      }
      params.push_back(v);
    }
    FLEXGS_ASSIGN_OR_RETURN(Intrinsics in, MakeIntrinsics(file, camera_id, *model, width, height, params, ctx));
    if (!cameras.emplace(camera_id, in).second) {
      return absl::InvalidArgumentError(absl::StrCat(where, "duplicate camera id ", camera_id));
    }
  }
  return cameras;
}

absl::StatusOr<std::vector<Camera>> ReadImagesTxt(const std::string& file, const IntrinsicsMap& intrinsics) {
  FLEXGS_ASSIGN_OR_RETURN(const std::string data, ReadWholeFile(file));
  const std::vector<std::string> lines = SplitLines(data);
  std::vector<Camera> cameras;
  size_t ln = 0;
  while (ln < lines.size()) {
    if (IsBlankOrComment(lines[ln])) {
      ++ln;
      continue;
    }
    const auto where = absl::StrCat(file, ":", ln + 1, ": ");
    // IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME; the name is the rest of the
    // line so that names with spaces survive.
    absl::string_view rest = absl::StripAsciiWhitespace(lines[ln]);
    std::vector<absl::string_view> tok;
    for (int k = 0; k < 9 && !rest.empty(); ++k) {
      const size_t sp = rest.find_first_of(" \t");
      tok.push_back(rest.substr(0, sp));
      rest = sp == absl::string_view::npos ? absl::string_view() : absl::StripLeadingAsciiWhitespace(rest.substr(sp));
    }
    int64_t image_id = 0, camera_id = 0;
    double q[4], t[3];
    bool ok =
        tok.size() == 9 && !rest.empty() && absl::SimpleAtoi(tok[0], &image_id) && absl::SimpleAtoi(tok[8], &camera_id);
    for (int k = 0; ok && k < 4; ++k) ok = absl::SimpleAtod(tok[1 + k], &q[k]);
    for (int k = 0; ok && k < 3; ++k) ok = absl::SimpleAtod(tok[5 + k], &t[k]);
    if (!ok) {
      return absl::InvalidArgumentError(absl::StrCat(where, "expected IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME"));
    }
    FLEXGS_ASSIGN_OR_RETURN(Camera cam, MakeCamera(file, intrinsics, camera_id, std::string(rest), q, t));
    cameras.push_back(std::move(cam));
    // The next line holds the image's 2D points (possibly empty): skip it as COLMAP does.
    ln += 2;
  }
  return cameras;
}

// Finds the folder that holds the model files; sets *binary.
absl::StatusOr<fs::path> FindColmapModelDir(const std::string& dir, bool* binary) {
  std::error_code ec;
  const fs::path root(dir);
  if (!fs::exists(root, ec)) return absl::NotFoundError(absl::StrCat(dir, ": directory not found"));
  if (!fs::is_directory(root, ec)) {
    return absl::InvalidArgumentError(absl::StrCat(dir, ": not a directory (expected a COLMAP model folder)"));
  }
  for (const fs::path& cand : {root, root / "sparse" / "0", root / "sparse"}) {
    if (fs::exists(cand / "cameras.bin", ec) && fs::exists(cand / "images.bin", ec)) {
      *binary = true;
      return cand;
    }
    if (fs::exists(cand / "cameras.txt", ec) && fs::exists(cand / "images.txt", ec)) {
      *binary = false;
      return cand;
    }
  }
  return absl::NotFoundError(absl::StrCat(dir,
                                          ": no COLMAP model found (looked for cameras.bin+images.bin or "
                                          "cameras.txt+images.txt in it, in sparse/0 and in sparse)"));
}

// Validates every camera, prefixing errors with the file they came from.
absl::Status ValidateAll(const std::string& source, const std::vector<Camera>& cameras) {
  for (const Camera& c : cameras) {
    absl::Status s = c.Validate();
    if (!s.ok()) return absl::Status(s.code(), absl::StrCat(source, ": ", s.message()));
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// INRIA cameras.json

using Json = nlohmann::json;

absl::Status JsonError(const std::string& path, size_t index, absl::string_view msg) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": camera ", index, ": ", msg));
}

absl::StatusOr<double> JsonNumber(const std::string& path, size_t index, const Json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end()) return JsonError(path, index, absl::StrCat("missing key '", key, "'"));
  if (!it->is_number()) return JsonError(path, index, absl::StrCat("'", key, "' is not a number"));
  return it->get<double>();
}

absl::StatusOr<int> JsonInt(const std::string& path, size_t index, const Json& obj, const char* key) {
  FLEXGS_ASSIGN_OR_RETURN(const double v, JsonNumber(path, index, obj, key));
  if (!(v >= 1 && v <= 32768) || v != std::floor(v)) {
    return JsonError(path, index, absl::StrCat("'", key, "' must be an integer in [1, 32768], got ", v));
  }
  return static_cast<int>(v);
}

// Reads obj[key] as a 3-vector, or (rows=3) as a 3x3 matrix given as rows.
absl::Status JsonDoubles(const std::string& path, size_t index, const Json& obj, const char* key, int rows,
                         double* out) {
  auto it = obj.find(key);
  if (it == obj.end()) return JsonError(path, index, absl::StrCat("missing key '", key, "'"));
  const auto shape_error = [&] {
    return JsonError(
        path, index,
        absl::StrCat("'", key, "' must be ", rows == 1 ? "an array of 3 numbers" : "3 arrays of 3 numbers"));
  };
  auto read_row = [&](const Json& row, double* dst) {
    if (!row.is_array() || row.size() != 3) return false;
    for (int k = 0; k < 3; ++k) {
      if (!row[k].is_number()) return false;
      dst[k] = row[k].get<double>();
    }
    return true;
  };
  if (rows == 1) return read_row(*it, out) ? absl::OkStatus() : shape_error();
  if (!it->is_array() || it->size() != 3) return shape_error();
  for (int r = 0; r < 3; ++r) {
    if (!read_row((*it)[r], out + 3 * r)) return shape_error();
  }
  return absl::OkStatus();
}

absl::StatusOr<Camera> ParseInriaCamera(const std::string& path, size_t index, const Json& obj) {
  if (!obj.is_object()) return JsonError(path, index, "is not a JSON object");
  Camera cam;
  FLEXGS_ASSIGN_OR_RETURN(cam.width, JsonInt(path, index, obj, "width"));
  FLEXGS_ASSIGN_OR_RETURN(cam.height, JsonInt(path, index, obj, "height"));
  FLEXGS_ASSIGN_OR_RETURN(cam.fx, JsonNumber(path, index, obj, "fx"));
  FLEXGS_ASSIGN_OR_RETURN(cam.fy, JsonNumber(path, index, obj, "fy"));
  cam.cx = 0.5 * cam.width;
  cam.cy = 0.5 * cam.height;
  // The macro expands to several statements, hence the braces.
  if (obj.contains("cx")) {
    FLEXGS_ASSIGN_OR_RETURN(cam.cx, JsonNumber(path, index, obj, "cx"));
  }
  if (obj.contains("cy")) {
    FLEXGS_ASSIGN_OR_RETURN(cam.cy, JsonNumber(path, index, obj, "cy"));
  }
  double position[3], rotation[9];
  FLEXGS_RETURN_IF_ERROR(JsonDoubles(path, index, obj, "position", 1, position));
  FLEXGS_RETURN_IF_ERROR(JsonDoubles(path, index, obj, "rotation", 3, rotation));
  // `rotation` is camera-to-world, stored as rows.
  Eigen::Matrix3d c2w;
  for (int r = 0; r < 3; ++r) {
    for (int c = 0; c < 3; ++c) c2w(r, c) = rotation[3 * r + c];
  }
  cam.R = c2w.transpose();
  cam.t = -cam.R * Eigen::Vector3d(position[0], position[1], position[2]);
  if (auto it = obj.find("img_name"); it != obj.end()) {
    if (!it->is_string()) return JsonError(path, index, "'img_name' is not a string");
    cam.name = it->get<std::string>();
  } else if (auto id = obj.find("id"); id != obj.end() && id->is_number_integer()) {
    cam.name = absl::StrCat("camera_", id->get<int64_t>());
  } else {
    cam.name = absl::StrCat("camera_", index);
  }
  absl::Status s = cam.Validate();
  if (!s.ok()) return JsonError(path, index, s.message());
  return cam;
}

}  // namespace

absl::StatusOr<std::vector<Camera>> ReadColmapModel(const std::string& dir) {
  bool binary = false;
  FLEXGS_ASSIGN_OR_RETURN(const fs::path model_dir, FindColmapModelDir(dir, &binary));
  // COLMAP >= 3.12 may add rigs/frames files; images.* still carry per-image
  // poses in the legacy layout, which is all 3DGS needs.
  ParseContext ctx;
  IntrinsicsMap intrinsics;
  std::vector<Camera> cameras;
  if (binary) {
    FLEXGS_ASSIGN_OR_RETURN(intrinsics, ReadCamerasBin((model_dir / "cameras.bin").string(), &ctx));
    FLEXGS_ASSIGN_OR_RETURN(cameras, ReadImagesBin((model_dir / "images.bin").string(), intrinsics));
  } else {
    FLEXGS_ASSIGN_OR_RETURN(intrinsics, ReadCamerasTxt((model_dir / "cameras.txt").string(), &ctx));
    FLEXGS_ASSIGN_OR_RETURN(cameras, ReadImagesTxt((model_dir / "images.txt").string(), intrinsics));
  }
  if (cameras.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(model_dir.string(), ": COLMAP model has no images"));
  }
  std::stable_sort(cameras.begin(), cameras.end(), [](const Camera& a, const Camera& b) { return a.name < b.name; });
  FLEXGS_RETURN_IF_ERROR(ValidateAll(model_dir.string(), cameras));
  spdlog::debug("read {} cameras from COLMAP model {}", cameras.size(), model_dir.string());
  return cameras;
}

absl::Status WriteColmapModelText(const std::string& dir, const std::vector<Camera>& cameras) {
  FLEXGS_RETURN_IF_ERROR(ValidateAll(dir, cameras));
  for (const Camera& c : cameras) {
    if (c.name.find_first_of("\n\r") != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("camera name '", c.name, "' contains a line break"));
    }
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat(dir, ": cannot create directory: ", ec.message()));

  std::string cams =
      absl::StrCat("# Camera list with one line of data per camera:\n",
                   "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]\n", "# Number of cameras: ", cameras.size(), "\n");
  std::string imgs = absl::StrCat(
      "# Image list with two lines of data per image:\n", "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME\n",
      "#   POINTS2D[] as (X, Y, POINT3D_ID)\n", "# Number of images: ", cameras.size(), "\n");
  for (size_t i = 0; i < cameras.size(); ++i) {
    const Camera& c = cameras[i];
    const size_t id = i + 1;
    absl::StrAppendFormat(&cams, "%d PINHOLE %d %d %.17g %.17g %.17g %.17g\n", id, c.width, c.height, c.fx, c.fy, c.cx,
                          c.cy);
    Eigen::Quaterniond q(c.R);
    q.normalize();
    if (q.w() < 0) q.coeffs() *= -1;  // canonical sign, as COLMAP writes
    const std::string name = c.name.empty() ? absl::StrFormat("image_%06d", id) : c.name;
    absl::StrAppendFormat(&imgs, "%d %.17g %.17g %.17g %.17g %.17g %.17g %.17g %d %s\n\n", id, q.w(), q.x(), q.y(),
                          q.z(), c.t.x(), c.t.y(), c.t.z(), id, name);
  }
  const fs::path root(dir);
  FLEXGS_RETURN_IF_ERROR(WriteFileAtomically((root / "cameras.txt").string(), cams));
  FLEXGS_RETURN_IF_ERROR(WriteFileAtomically((root / "images.txt").string(), imgs));
  return WriteFileAtomically((root / "points3D.txt").string(),
                             "# 3D point list with one line of data per point:\n"
                             "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)\n"
                             "# Number of points: 0\n");
}

absl::StatusOr<std::vector<Camera>> ReadInriaCamerasJson(const std::string& path) {
  FLEXGS_ASSIGN_OR_RETURN(const std::string data, ReadWholeFile(path));
  Json root;
  try {
    root = Json::parse(data);
  } catch (const Json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": invalid JSON: ", e.what()));
  }
  if (!root.is_array()) return absl::InvalidArgumentError(absl::StrCat(path, ": expected a JSON array of cameras"));
  if (root.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": contains no cameras"));
  std::vector<Camera> cameras;
  cameras.reserve(root.size());
  try {
    for (size_t i = 0; i < root.size(); ++i) {
      FLEXGS_ASSIGN_OR_RETURN(Camera cam, ParseInriaCamera(path, i, root[i]));
      cameras.push_back(std::move(cam));
    }
  } catch (const Json::exception& e) {  // defensive: the checks above should prevent any
    return absl::InvalidArgumentError(absl::StrCat(path, ": malformed camera entry: ", e.what()));
  }
  return cameras;
}

absl::Status WriteInriaCamerasJson(const std::string& path, const std::vector<Camera>& cameras) {
  FLEXGS_RETURN_IF_ERROR(ValidateAll(path, cameras));
  try {
    nlohmann::ordered_json root = nlohmann::ordered_json::array();
    for (size_t i = 0; i < cameras.size(); ++i) {
      const Camera& c = cameras[i];
      const Eigen::Matrix3d c2w = c.R.transpose();
      const Eigen::Vector3d centre = c.Centre();
      nlohmann::ordered_json j;
      j["id"] = i;
      j["img_name"] = c.name;
      j["width"] = c.width;
      j["height"] = c.height;
      j["position"] = {centre.x(), centre.y(), centre.z()};
      nlohmann::ordered_json rot = nlohmann::ordered_json::array();
      for (int r = 0; r < 3; ++r) rot.push_back({c2w(r, 0), c2w(r, 1), c2w(r, 2)});
      j["rotation"] = std::move(rot);
      j["fy"] = c.fy;
      j["fx"] = c.fx;
      j["cx"] = c.cx;
      j["cy"] = c.cy;
      root.push_back(std::move(j));
    }
    return WriteFileAtomically(path, root.dump(1) + "\n");
  } catch (const nlohmann::ordered_json::exception& e) {  // e.g. a name that is not valid UTF-8
    return absl::InvalidArgumentError(absl::StrCat(path, ": cannot serialise cameras: ", e.what()));
  }
}

absl::StatusOr<std::vector<Camera>> LoadCameras(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) return ReadColmapModel(path);
  std::string ext = fs::path(path).extension().string();
  absl::AsciiStrToLower(&ext);
  if (ext == ".json") return ReadInriaCamerasJson(path);
  if (!fs::exists(path, ec)) return absl::NotFoundError(absl::StrCat(path, ": not found"));
  return absl::InvalidArgumentError(absl::StrCat(
      path, ": unsupported camera file (expected a .json INRIA cameras file or a COLMAP model directory)"));
}

}  // namespace flexgs
