#include "io/camera_io.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <Eigen/Geometry>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_util.h"

namespace flexgs {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// Little-endian byte builder for hand-made COLMAP binary files.
class Bytes {
 public:
  template <typename T>
  Bytes& Put(T v) {
    s_.append(reinterpret_cast<const char*>(&v), sizeof(T));
    return *this;
  }
  Bytes& PutName(const std::string& name) {
    s_ += name;
    s_.push_back('\0');
    return *this;
  }
  const std::string& str() const { return s_; }

 private:
  std::string s_;
};

void WriteFile(const fs::path& p, const std::string& data) {
  std::ofstream out(p, std::ios::binary);
  out << data;
  ASSERT_TRUE(out.good()) << p;
}

std::string ReadFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

Eigen::Vector2d Project(const Camera& c, const Eigen::Vector3d& world) {
  const Eigen::Vector3d x = c.R * world + c.t;
  return {c.fx * x.x() / x.z() + c.cx, c.fy * x.y() / x.z() + c.cy};
}

// Camera record: id, model id, width, height, params.
void PutCamera(Bytes& b, int32_t id, int32_t model, uint64_t w, uint64_t h, const std::vector<double>& params) {
  b.Put(id).Put(model).Put(w).Put(h);
  for (double p : params) b.Put(p);
}

// Image record: id, qvec (w,x,y,z), tvec, camera id, name, num_points2D, points.
void PutImage(Bytes& b, int32_t id, const double q[4], const double t[3], int32_t camera_id, const std::string& name,
              uint64_t num_points) {
  b.Put(id);
  for (int k = 0; k < 4; ++k) b.Put(q[k]);
  for (int k = 0; k < 3; ++k) b.Put(t[k]);
  b.Put(camera_id).PutName(name).Put(num_points);
  for (uint64_t i = 0; i < num_points; ++i) b.Put(1.5 * i).Put(2.5 * i).Put(static_cast<int64_t>(i) - 1);
}

// Rotation of 90 degrees about +y, as a COLMAP qvec and as a matrix.
const double kQuatY90[4] = {std::sqrt(0.5), 0.0, std::sqrt(0.5), 0.0};
const double kQuatIdentity[4] = {1.0, 0.0, 0.0, 0.0};

Eigen::Matrix3d RotY90() {
  Eigen::Matrix3d r;
  r << 0, 0, 1, 0, 1, 0, -1, 0, 0;
  return r;
}

// A two-camera, two-image model; images are stored out of name order.
std::string GoodCamerasBin() {
  Bytes b;
  b.Put(uint64_t{2});
  PutCamera(b, 1, /*PINHOLE*/ 1, 640, 480, {500.0, 510.0, 320.5, 240.25});
  PutCamera(b, 2, /*SIMPLE_PINHOLE*/ 0, 800, 600, {700.0, 400.0, 300.0});
  return b.str();
}

std::string GoodImagesBin() {
  Bytes b;
  b.Put(uint64_t{2});
  const double t1[3] = {0, 0, 5};
  const double t2[3] = {0, 0, 4};
  PutImage(b, 5, kQuatIdentity, t1, 1, "b.png", 3);
  PutImage(b, 3, kQuatY90, t2, 2, "a.png", 0);
  return b.str();
}

void ExpectGoodModel(const std::vector<Camera>& cams) {
  ASSERT_EQ(cams.size(), 2u);
  EXPECT_EQ(cams[0].name, "a.png");
  EXPECT_EQ(cams[1].name, "b.png");

  const Camera& a = cams[0];
  EXPECT_EQ(a.width, 800);
  EXPECT_EQ(a.height, 600);
  EXPECT_DOUBLE_EQ(a.fx, 700);
  EXPECT_DOUBLE_EQ(a.fy, 700);
  EXPECT_DOUBLE_EQ(a.cx, 400);
  EXPECT_DOUBLE_EQ(a.cy, 300);
  EXPECT_TRUE(a.R.isApprox(RotY90(), 1e-12)) << a.R;
  EXPECT_TRUE(a.t.isApprox(Eigen::Vector3d(0, 0, 4), 1e-12));
  // R*(-2, 1.2, 3) + t = (3, 1.2, 6) -> (700*0.5 + 400, 700*0.2 + 300).
  const Eigen::Vector2d pa = Project(a, {-2, 1.2, 3});
  EXPECT_NEAR(pa.x(), 750.0, 1e-9);
  EXPECT_NEAR(pa.y(), 440.0, 1e-9);

  const Camera& b = cams[1];
  EXPECT_EQ(b.width, 640);
  EXPECT_EQ(b.height, 480);
  EXPECT_DOUBLE_EQ(b.fx, 500);
  EXPECT_DOUBLE_EQ(b.fy, 510);
  EXPECT_DOUBLE_EQ(b.cx, 320.5);
  EXPECT_DOUBLE_EQ(b.cy, 240.25);
  EXPECT_TRUE(b.R.isApprox(Eigen::Matrix3d::Identity(), 1e-12));
  // (1, 2, 0) + (0, 0, 5) -> (500/5 + 320.5, 510*2/5 + 240.25).
  const Eigen::Vector2d pb = Project(b, {1, 2, 0});
  EXPECT_NEAR(pb.x(), 420.5, 1e-9);
  EXPECT_NEAR(pb.y(), 444.25, 1e-9);
}

TEST(ColmapBinaryTest, ReadsHandBuiltModelSortedByName) {
  const fs::path dir = testing::ScratchDir();
  WriteFile(dir / "cameras.bin", GoodCamerasBin());
  WriteFile(dir / "images.bin", GoodImagesBin());
  auto cams = ReadColmapModel(dir.string());
  ASSERT_TRUE(cams.ok()) << cams.status();
  ExpectGoodModel(*cams);
}

TEST(ColmapBinaryTest, FindsSparseZeroInDatasetFolder) {
  const fs::path dir = testing::ScratchDir();
  fs::create_directories(dir / "sparse" / "0");
  WriteFile(dir / "sparse" / "0" / "cameras.bin", GoodCamerasBin());
  WriteFile(dir / "sparse" / "0" / "images.bin", GoodImagesBin());
  auto cams = ReadColmapModel(dir.string());
  ASSERT_TRUE(cams.ok()) << cams.status();
  ExpectGoodModel(*cams);
  auto loaded = LoadCameras(dir.string());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->size(), 2u);
}

TEST(ColmapBinaryTest, AcceptsDistortedModelsIgnoringDistortion) {
  const fs::path dir = testing::ScratchDir();
  Bytes c;
  c.Put(uint64_t{2});
  PutCamera(c, 1, /*OPENCV*/ 4, 100, 80, {90, 91, 50, 40, 0.1, -0.01, 0.001, 0.002});
  PutCamera(c, 2, /*SIMPLE_RADIAL*/ 2, 100, 80, {95, 49, 41, 0.05});
  Bytes i;
  i.Put(uint64_t{2});
  const double t[3] = {0, 0, 1};
  PutImage(i, 1, kQuatIdentity, t, 1, "x.jpg", 0);
  PutImage(i, 2, kQuatIdentity, t, 2, "y.jpg", 0);
  WriteFile(dir / "cameras.bin", c.str());
  WriteFile(dir / "images.bin", i.str());
  auto cams = ReadColmapModel(dir.string());
  ASSERT_TRUE(cams.ok()) << cams.status();
  ASSERT_EQ(cams->size(), 2u);
  EXPECT_DOUBLE_EQ((*cams)[0].fx, 90);
  EXPECT_DOUBLE_EQ((*cams)[0].fy, 91);
  EXPECT_DOUBLE_EQ((*cams)[0].cx, 50);
  EXPECT_DOUBLE_EQ((*cams)[0].cy, 40);
  EXPECT_DOUBLE_EQ((*cams)[1].fx, 95);
  EXPECT_DOUBLE_EQ((*cams)[1].fy, 95);
  EXPECT_DOUBLE_EQ((*cams)[1].cx, 49);
}

// Writes cameras.bin/images.bin into a fresh dir and returns the read status.
absl::Status ReadBinary(const fs::path& dir, const std::string& cameras, const std::string& images) {
  WriteFile(dir / "cameras.bin", cameras);
  WriteFile(dir / "images.bin", images);
  return ReadColmapModel(dir.string()).status();
}

TEST(ColmapBinaryTest, RejectsTruncatedCamerasBin) {
  const std::string good = GoodCamerasBin();
  const absl::Status s = ReadBinary(testing::ScratchDir(), good.substr(0, good.size() - 5), GoodImagesBin());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("cameras.bin"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("truncated"));
}

TEST(ColmapBinaryTest, RejectsUnknownModelId) {
  Bytes c;
  c.Put(uint64_t{1});
  PutCamera(c, 1, 42, 640, 480, {500, 320, 240});
  const absl::Status s = ReadBinary(testing::ScratchDir(), c.str(), GoodImagesBin());
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()), HasSubstr("unknown camera model id 42"));
}

TEST(ColmapBinaryTest, RejectsFisheyeModel) {
  Bytes c;
  c.Put(uint64_t{1});
  PutCamera(c, 1, /*OPENCV_FISHEYE*/ 5, 640, 480, {500, 500, 320, 240, 0, 0, 0, 0});
  const absl::Status s = ReadBinary(testing::ScratchDir(), c.str(), GoodImagesBin());
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()), HasSubstr("OPENCV_FISHEYE"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("undistort"));
}

TEST(ColmapBinaryTest, RejectsAbsurdCameraCount) {
  Bytes c;
  c.Put(uint64_t{1} << 60);
  PutCamera(c, 1, 1, 640, 480, {500, 500, 320, 240});
  const absl::Status s = ReadBinary(testing::ScratchDir(), c.str(), GoodImagesBin());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("num_cameras"));
}

TEST(ColmapBinaryTest, RejectsImageWithMissingCamera) {
  Bytes i;
  i.Put(uint64_t{1});
  const double t[3] = {0, 0, 1};
  PutImage(i, 1, kQuatIdentity, t, 9, "orphan.png", 0);
  const absl::Status s = ReadBinary(testing::ScratchDir(), GoodCamerasBin(), i.str());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("missing camera id 9"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("orphan.png"));
}

TEST(ColmapBinaryTest, RejectsAbsurdPointCountAndUnterminatedName) {
  const double t[3] = {0, 0, 1};
  {
    Bytes i;
    i.Put(uint64_t{1});
    PutImage(i, 1, kQuatIdentity, t, 1, "a.png", 0);
    std::string data = i.str();
    const uint64_t huge = uint64_t{1} << 40;  // overwrite num_points2D (the last 8 bytes)
    std::memcpy(&data[data.size() - 8], &huge, 8);
    const absl::Status s = ReadBinary(testing::ScratchDir(), GoodCamerasBin(), data);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(s.message()), HasSubstr("2D points"));
  }
  {
    Bytes i;
    i.Put(uint64_t{1});
    i.Put(int32_t{1});
    for (int k = 0; k < 4; ++k) i.Put(kQuatIdentity[k]);
    for (int k = 0; k < 3; ++k) i.Put(t[k]);
    i.Put(int32_t{1});
    std::string data = i.str() + std::string(20, 'n');  // name without NUL up to EOF
    const absl::Status s = ReadBinary(testing::ScratchDir(), GoodCamerasBin(), data);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(s.message()), HasSubstr("NUL"));
  }
}

TEST(ColmapBinaryTest, RejectsAbsurdImageCountAndTruncatedImages) {
  {
    Bytes i;
    i.Put(~uint64_t{0});
    const absl::Status s = ReadBinary(testing::ScratchDir(), GoodCamerasBin(), i.str());
    EXPECT_THAT(std::string(s.message()), HasSubstr("num_reg_images"));
  }
  {
    const std::string good = GoodImagesBin();
    const absl::Status s = ReadBinary(testing::ScratchDir(), GoodCamerasBin(), good.substr(0, good.size() - 30));
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(s.message()), HasSubstr("images.bin"));
  }
}

TEST(ColmapTest, MissingDirectoryOrModelIsNotFound) {
  const fs::path dir = testing::ScratchDir();
  auto missing = ReadColmapModel((dir / "nope").string());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("not found"));
  auto empty = ReadColmapModel(dir.string());
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(empty.status().message()), HasSubstr("no COLMAP model"));
  EXPECT_EQ(LoadCameras((dir / "nope.json").string()).status().code(), absl::StatusCode::kNotFound);
}

TEST(ColmapTextTest, ReadsHandWrittenTextModel) {
  const fs::path dir = testing::ScratchDir();
  WriteFile(dir / "cameras.txt",
            "# Camera list with one line of data per camera:\n"
            "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]\n"
            "1 PINHOLE 640 480 500 510 320.5 240.25\r\n"
            "\n"
            "2 SIMPLE_PINHOLE 800 600 700 400 300\n");
  WriteFile(dir / "images.txt",
            "# Image list with two lines of data per image:\n"
            "5 1 0 0 0 0 0 5 1 b.png\n"
            "10.5 20.5 -1 11.0 12.0 7\n"
            "3 0.70710678118654757 0 0.70710678118654757 0 0 0 4 2 a.png\n"
            "\n");
  auto cams = ReadColmapModel(dir.string());
  ASSERT_TRUE(cams.ok()) << cams.status();
  ExpectGoodModel(*cams);
}

TEST(ColmapTextTest, ImageNamesMayContainSpaces) {
  const fs::path dir = testing::ScratchDir();
  WriteFile(dir / "cameras.txt", "1 PINHOLE 64 48 50 50 32 24\n");
  WriteFile(dir / "images.txt", "1 1 0 0 0 0 0 1 1 my photo 01.png\n\n");
  auto cams = ReadColmapModel(dir.string());
  ASSERT_TRUE(cams.ok()) << cams.status();
  ASSERT_EQ(cams->size(), 1u);
  EXPECT_EQ((*cams)[0].name, "my photo 01.png");
}

TEST(ColmapTextTest, RejectsBadLines) {
  const fs::path dir = testing::ScratchDir();
  WriteFile(dir / "cameras.txt", "1 PINHOLE 64 48 50 50 32\n");  // one parameter short
  WriteFile(dir / "images.txt", "1 1 0 0 0 0 0 1 1 a.png\n\n");
  auto s = ReadColmapModel(dir.string()).status();
  EXPECT_THAT(std::string(s.message()), HasSubstr("parameters"));
  WriteFile(dir / "cameras.txt", "1 FOV 64 48 50 50 32 24 0.1\n");
  s = ReadColmapModel(dir.string()).status();
  EXPECT_THAT(std::string(s.message()), HasSubstr("unsupported camera model FOV"));
  WriteFile(dir / "cameras.txt", "1 PINHOLE 64 48 50 50 32 24\n");
  WriteFile(dir / "images.txt", "1 1 0 0 zero 0 0 1 1 a.png\n\n");
  s = ReadColmapModel(dir.string()).status();
  EXPECT_THAT(std::string(s.message()), HasSubstr("images.txt:1"));
}

std::vector<Camera> SomeCameras() {
  std::vector<Camera> cams;
  for (int i = 0; i < 5; ++i) {
    const double a = 0.7 * i + 0.3;
    Camera c = Camera::LookAt({4 * std::cos(a), -1.0 - 0.2 * i, 4 * std::sin(a)}, {0.1, -2, 0.2}, {0, -1, 0},
                              320 + 16 * i, 240 + 8 * i, 40.0 + 3 * i);
    c.fy *= 1.01;
    c.cx += 3.25 * i;  // off-centre principal points must survive the round trip
    c.cy -= 1.5 * i;
    c.name = "view_" + std::to_string(4 - i) + ".png";
    cams.push_back(c);
  }
  return cams;
}

void ExpectSameCamera(const Camera& a, const Camera& b, double tol) {
  EXPECT_EQ(a.name, b.name);
  EXPECT_EQ(a.width, b.width);
  EXPECT_EQ(a.height, b.height);
  EXPECT_NEAR(a.fx, b.fx, tol);
  EXPECT_NEAR(a.fy, b.fy, tol);
  EXPECT_NEAR(a.cx, b.cx, tol);
  EXPECT_NEAR(a.cy, b.cy, tol);
  EXPECT_LT((a.R - b.R).cwiseAbs().maxCoeff(), tol) << a.name;
  EXPECT_LT((a.t - b.t).cwiseAbs().maxCoeff(), tol) << a.name;
}

TEST(ColmapTextTest, WriteThenReadRoundTrip) {
  const fs::path dir = testing::ScratchDir() / "model";
  const auto cams = SomeCameras();
  ASSERT_TRUE(WriteColmapModelText(dir.string(), cams).ok());
  EXPECT_TRUE(fs::exists(dir / "points3D.txt"));
  auto back = ReadColmapModel(dir.string());
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->size(), cams.size());
  // Sorted by name: view_0 (cams[4]) first.
  for (size_t i = 0; i < cams.size(); ++i) ExpectSameCamera((*back)[i], cams[cams.size() - 1 - i], 1e-12);
}

TEST(InriaJsonTest, RoundTripPreservesOrderAndPrincipalPoint) {
  const fs::path path = testing::ScratchDir() / "cameras.json";
  const auto cams = SomeCameras();
  ASSERT_TRUE(WriteInriaCamerasJson(path.string(), cams).ok());
  auto back = ReadInriaCamerasJson(path.string());
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->size(), cams.size());
  for (size_t i = 0; i < cams.size(); ++i) ExpectSameCamera((*back)[i], cams[i], 1e-12);
  // LoadCameras dispatches on the extension.
  auto loaded = LoadCameras(path.string());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->size(), cams.size());
  // The file keeps INRIA's keys.
  const std::string text = ReadFile(path);
  for (const char* key : {"\"img_name\"", "\"position\"", "\"rotation\"", "\"fx\"", "\"fy\"", "\"id\""}) {
    EXPECT_THAT(text, HasSubstr(key));
  }
}

// Camera at (1, 2, 3) whose camera-to-world rotation is 90 degrees about z.
constexpr char kHandJson[] = R"([
  {"id": 0, "img_name": "frame_0001", "width": 200, "height": 100,
   "position": [1.0, 2.0, 3.0],
   "rotation": [[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]],
   "fy": 150.0, "fx": 160.0}
])";

TEST(InriaJsonTest, ReadsHandWrittenCamera) {
  const fs::path path = testing::ScratchDir() / "cameras.json";
  WriteFile(path, kHandJson);
  auto cams = ReadInriaCamerasJson(path.string());
  ASSERT_TRUE(cams.ok()) << cams.status();
  ASSERT_EQ(cams->size(), 1u);
  const Camera& c = (*cams)[0];
  EXPECT_EQ(c.name, "frame_0001");
  EXPECT_EQ(c.width, 200);
  EXPECT_EQ(c.height, 100);
  EXPECT_DOUBLE_EQ(c.fx, 160);
  EXPECT_DOUBLE_EQ(c.fy, 150);
  EXPECT_DOUBLE_EQ(c.cx, 100);  // centred: INRIA stores no principal point
  EXPECT_DOUBLE_EQ(c.cy, 50);
  EXPECT_TRUE(c.Centre().isApprox(Eigen::Vector3d(1, 2, 3), 1e-12));
  Eigen::Matrix3d c2w;
  c2w << 0, -1, 0, 1, 0, 0, 0, 0, 1;
  EXPECT_TRUE(c.R.isApprox(c2w.transpose(), 1e-12));
  // A point 2 units ahead, 0.5 right and 0.25 down in camera space.
  const Eigen::Vector3d world = Eigen::Vector3d(1, 2, 3) + c2w * Eigen::Vector3d(0.5, 0.25, 2.0);
  const Eigen::Vector2d px = Project(c, world);
  EXPECT_NEAR(px.x(), 160 * 0.25 + 100, 1e-9);
  EXPECT_NEAR(px.y(), 150 * 0.125 + 50, 1e-9);
}

absl::Status ReadJsonText(const std::string& text) {
  const fs::path path = testing::ScratchDir() / "cameras.json";
  WriteFile(path, text);
  return ReadInriaCamerasJson(path.string()).status();
}

TEST(InriaJsonTest, RejectsBadInput) {
  std::string bad_rot = kHandJson;
  bad_rot.replace(bad_rot.find("[0.0, 0.0, 1.0]"), 15, "[0.0, 0.0, 2.0]");
  absl::Status s = ReadJsonText(bad_rot);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("not a rotation"));

  std::string no_fx = kHandJson;
  no_fx.replace(no_fx.find(", \"fx\": 160.0"), 13, "");
  s = ReadJsonText(no_fx);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("missing key 'fx'"));

  s = ReadJsonText("[{\"width\": 10,");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("invalid JSON"));

  s = ReadJsonText("{\"cameras\": []}");
  EXPECT_THAT(std::string(s.message()), HasSubstr("array"));

  std::string bad_pos = kHandJson;
  bad_pos.replace(bad_pos.find("[1.0, 2.0, 3.0]"), 15, "[1.0, \"2\"]");
  s = ReadJsonText(bad_pos);
  EXPECT_THAT(std::string(s.message()), HasSubstr("'position'"));

  std::string bad_width = kHandJson;
  bad_width.replace(bad_width.find("200"), 3, "-5");
  s = ReadJsonText(bad_width);
  EXPECT_THAT(std::string(s.message()), HasSubstr("'width'"));

  EXPECT_EQ(ReadInriaCamerasJson("/nonexistent/cameras.json").status().code(), absl::StatusCode::kNotFound);
}

TEST(CameraWriteTest, RejectsInvalidCameras) {
  std::vector<Camera> cams = SomeCameras();
  cams[2].fx = -1;
  const fs::path dir = testing::ScratchDir();
  EXPECT_FALSE(WriteInriaCamerasJson((dir / "c.json").string(), cams).ok());
  EXPECT_FALSE(WriteColmapModelText((dir / "m").string(), cams).ok());
  EXPECT_FALSE(fs::exists(dir / "c.json"));
}

}  // namespace
}  // namespace flexgs
