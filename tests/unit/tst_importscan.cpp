#include "pipeline/ImportScan.h"

#include <QByteArray>
#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QTemporaryDir>
#include <QtTest>

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include <dirent.h>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace cytosae::pipeline;
using cytosae::Error;
using cytosae::Result;

namespace {

using Meta = std::vector<std::pair<std::string, std::string>>;

// Scanning never decodes, so a few fake bytes are enough for an "image".
bool makeFile(const QTemporaryDir &dir, const QString &relative, const QByteArray &bytes = "fake")
{
    const QString full = dir.filePath(relative);
    if (!QDir().mkpath(QFileInfo(full).absolutePath()))
        return false;
    QFile f(full);
    if (!f.open(QIODevice::WriteOnly | QIODevice::Truncate))
        return false;
    return f.write(bytes) == bytes.size();
}

std::string spath(const QTemporaryDir &dir, const QString &relative)
{
    return dir.filePath(relative).toStdString();
}

std::vector<std::string> itemPaths(const ScanResult &r)
{
    std::vector<std::string> out;
    for (const ImportItem &item : r.items)
        out.push_back(item.path);
    return out;
}

// "path|patient|class|diagnosis" relative to root, so one QCOMPARE checks every label.
std::vector<std::string> itemSummary(const ScanResult &r, const QTemporaryDir &root)
{
    const std::string prefix = root.path().toStdString() + "/";
    std::vector<std::string> out;
    for (const ImportItem &item : r.items) {
        std::string p = item.path;
        if (p.compare(0, prefix.size(), prefix) == 0)
            p = p.substr(prefix.size());
        out.push_back(p + "|" + item.patientCode + "|" + item.className + "|" + item.diagnosis);
    }
    return out;
}

bool contains(const std::string &haystack, const std::string &needle)
{
    return haystack.find(needle) != std::string::npos;
}

// --- Scanning as an unprivileged user, for tests that run as root -----------------------------
// Permission bits do not stop root (CAP_DAC_OVERRIDE), so a root test process forks a child
// that gives up root for good (supplementary groups, then gid, then uid, all three of real,
// effective and saved), checks that the folder really is unreadable to it, runs the scan and
// sends the result back through a pipe as NUL-terminated fields.

constexpr int kChildCannotDrop = 3; // the environment does not allow it: the test skips

// The user "nobody" (65534 on Debian and most distributions if the name is not found).
std::pair<uid_t, gid_t> nobodyIds()
{
    if (const passwd *pw = ::getpwnam("nobody"))
        return {pw->pw_uid, pw->pw_gid};
    return {65534, 65534};
}

void putField(std::string &out, const std::string &field)
{
    out += field;
    out.push_back('\0');
}

std::string serialise(const Result<ScanResult> &r)
{
    std::string out;
    if (!r.ok()) {
        putField(out, "error");
        putField(out, r.message());
        return out;
    }
    putField(out, "ok");
    putField(out, std::to_string(r->items.size()));
    for (const ImportItem &item : r->items) {
        putField(out, item.path);
        putField(out, item.patientCode);
        putField(out, item.className);
        putField(out, item.diagnosis);
    }
    putField(out, std::to_string(r->issues.size()));
    for (const ScanIssue &issue : r->issues) {
        putField(out, issue.path);
        putField(out, issue.message);
    }
    return out;
}

// Parses what serialise() wrote; false if the bytes are not a whole record.
bool deserialise(const std::string &bytes, Result<ScanResult> &out)
{
    std::vector<std::string> f;
    size_t start = 0;
    while (start < bytes.size()) {
        const size_t end = bytes.find('\0', start);
        if (end == std::string::npos)
            return false;
        f.push_back(bytes.substr(start, end - start));
        start = end + 1;
    }
    size_t i = 0;
    auto next = [&](std::string &s) {
        if (i >= f.size())
            return false;
        s = f[i++];
        return true;
    };
    auto count = [&](size_t &n) {
        std::string s;
        if (!next(s) || s.empty() || s.find_first_not_of("0123456789") != std::string::npos || s.size() > 6)
            return false;
        n = std::stoul(s);
        return true;
    };
    std::string tag;
    if (!next(tag))
        return false;
    if (tag == "error") {
        std::string message;
        if (!next(message) || i != f.size())
            return false;
        out = Result<ScanResult>(Error(message));
        return true;
    }
    if (tag != "ok")
        return false;
    ScanResult r;
    size_t n = 0;
    if (!count(n))
        return false;
    for (size_t k = 0; k < n; ++k) {
        ImportItem item;
        if (!next(item.path) || !next(item.patientCode) || !next(item.className) || !next(item.diagnosis))
            return false;
        r.items.push_back(std::move(item));
    }
    if (!count(n))
        return false;
    for (size_t k = 0; k < n; ++k) {
        ScanIssue issue;
        if (!next(issue.path) || !next(issue.message))
            return false;
        r.issues.push_back(std::move(issue));
    }
    if (i != f.size())
        return false;
    out = Result<ScanResult>(std::move(r));
    return true;
}

void writeAll(int fd, const std::string &bytes)
{
    size_t done = 0;
    while (done < bytes.size()) {
        const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        done += size_t(n);
    }
}

[[noreturn]] void leaveChild(int fd, int code, const std::string &message)
{
    writeAll(fd, message);
    ::close(fd);
    ::_exit(code); // no atexit handlers, no flushing of the parent's stdio buffers
}

// In the forked child: never returns.
[[noreturn]] void scanAsChild(int fd, uid_t uid, gid_t gid, const std::string &root, const std::string &locked)
{
    auto why = [](const char *what) { return std::string(what) + ": " + std::strerror(errno); };
    if (::setgroups(0, nullptr) != 0)
        leaveChild(fd, kChildCannotDrop, why("setgroups"));
    if (::setresgid(gid, gid, gid) != 0)
        leaveChild(fd, kChildCannotDrop, why("setresgid"));
    if (::setresuid(uid, uid, uid) != 0)
        leaveChild(fd, kChildCannotDrop, why("setresuid"));
    // The drop must be real and final, or the test below proves nothing.
    if (::geteuid() != uid || ::getegid() != gid || ::setresuid(0, 0, 0) == 0)
        leaveChild(fd, 1, "still privileged after dropping root");
    if (::access(root.c_str(), R_OK | X_OK) != 0)
        leaveChild(fd, kChildCannotDrop, why(("the unprivileged user cannot reach " + root).c_str()));
    if (DIR *d = ::opendir(locked.c_str())) {
        ::closedir(d);
        leaveChild(fd, 1, "the locked folder is still readable after dropping root");
    }
    leaveChild(fd, 0, serialise(scanFolder(root)));
}

struct ChildScan {
    bool skipped = false;  // privileges could not be dropped here; why holds the reason
    std::string why;       // set when skipped or when the child failed
    Result<ScanResult> result = Error("no result");
};

// Runs scanFolder(root) in a child process as the user "nobody". The tree under root must be
// owned by (or open to) that user; locked is the folder that must be unreadable to it.
ChildScan scanFolderAsNobody(const std::string &root, const std::string &locked)
{
    ChildScan out;
    const auto [uid, gid] = nobodyIds();
    int fds[2];
    if (::pipe(fds) != 0) {
        out.why = "pipe failed";
        return out;
    }
    const pid_t pid = ::fork();
    if (pid < 0) {
        ::close(fds[0]);
        ::close(fds[1]);
        out.why = "fork failed";
        return out;
    }
    if (pid == 0) {
        ::close(fds[0]);
        scanAsChild(fds[1], uid, gid, root, locked);
    }
    ::close(fds[1]);
    std::string bytes;
    char buffer[4096];
    for (;;) {
        const ssize_t n = ::read(fds[0], buffer, sizeof buffer);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        bytes.append(buffer, size_t(n));
    }
    ::close(fds[0]);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(status)) {
        out.why = "the unprivileged child did not exit normally";
        return out;
    }
    if (WEXITSTATUS(status) == kChildCannotDrop) {
        out.skipped = true;
        out.why = bytes;
        return out;
    }
    if (WEXITSTATUS(status) != 0) {
        out.why = "the unprivileged child failed: " + bytes;
        return out;
    }
    if (!deserialise(bytes, out.result))
        out.why = "the unprivileged child sent a malformed result";
    return out;
}

} // namespace

class TestImportScan : public QObject {
    Q_OBJECT

private slots:
    void imageFileNames();
    void layoutNames();

    void patientPerFolderAmlHehr();
    void classPerFolderNestedBmc();
    void flatSkipsHiddenAndNonImages();
    void diagnosisThenPatient();
    void rootSpellingIsNormalised();
    void symlinksNotFollowedByDefault();
    void symlinksFollowedWhenAsked();
    void unreadableFolderBecomesIssue();
    void scanErrors();

    void csvQuotesAndEmbeddedCommas();
    void csvEmbeddedNewlinesAndLineNumbers();
    void csvCrlfBomAndSemicolons();
    void csvTabsAndBlankLines();
    void csvErrors();

    void manifestRelativePathsAndMetadata();
    void manifestAliasesCaseAndSemicolons();
    void manifestErrors();
    void patientTable();
    void patientTableErrors();
};

void TestImportScan::imageFileNames()
{
    for (const char *yes : {"a.tif", "a.tiff", "a.png", "a.jpg", "a.jpeg", "a.bmp", "A.TIF", "x/y/B.JpEg",
                            "/abs/c.PNG", "d.BMP", "many.dots.tiff"})
        QVERIFY2(isImageFileName(yes), yes);
    for (const char *no : {"a.txt", "a.csv", "a.tif.gz", "a", "", ".png", "x/.jpg", "a.gif", "a.webp",
                           "tif", "a.tif/", "a.jpg~"})
        QVERIFY2(!isImageFileName(no), no);
}

void TestImportScan::layoutNames()
{
    QCOMPARE(*parseLayout("flat"), FolderLayout::Flat);
    QCOMPARE(*parseLayout("class"), FolderLayout::ClassPerFolder);
    QCOMPARE(*parseLayout("patient"), FolderLayout::PatientPerFolder);
    QCOMPARE(*parseLayout("diagnosis-patient"), FolderLayout::DiagnosisThenPatient);
    QCOMPARE(*parseLayout(" Patient "), FolderLayout::PatientPerFolder);
    QCOMPARE(*parseLayout("FLAT"), FolderLayout::Flat);

    const auto bad = parseLayout("patients");
    QVERIFY(!bad.ok());
    QCOMPARE(bad.message(),
             std::string("unknown folder layout \"patients\"; expected flat, class, patient or diagnosis-patient"));
    QVERIFY(!parseLayout("").ok());

    for (FolderLayout l : {FolderLayout::Flat, FolderLayout::ClassPerFolder, FolderLayout::PatientPerFolder,
                           FolderLayout::DiagnosisThenPatient})
        QCOMPARE(*parseLayout(layoutName(l)), l);
}

void TestImportScan::patientPerFolderAmlHehr()
{
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    QVERIFY(makeFile(dir, "BBB/BBB_002.tif"));
    QVERIFY(makeFile(dir, "BBB/BBB_001.tif"));
    QVERIFY(makeFile(dir, "AAA/AAA_001.tif"));
    QVERIFY(makeFile(dir, "AAA/AAA_010.TIF"));
    QVERIFY(makeFile(dir, "AAA/AAA/nested.tif"));    // sub-folder named like the patient: no class
    QVERIFY(makeFile(dir, "BBB/myeloblast/m1.tif")); // deeper folder gives the class
    QVERIFY(makeFile(dir, "loose.tif"));             // directly in the root: no patient
    QVERIFY(makeFile(dir, "AAA/notes.txt"));

    ScanOptions opts;
    opts.layout = FolderLayout::PatientPerFolder;
    const auto r = scanFolder(dir.path().toStdString(), opts);
    QVERIFY2(r.ok(), r.message().c_str());
    QCOMPARE(itemSummary(*r, dir), (std::vector<std::string>{
                                       "AAA/AAA/nested.tif|AAA||",
                                       "AAA/AAA_001.tif|AAA||",
                                       "AAA/AAA_010.TIF|AAA||",
                                       "BBB/BBB_001.tif|BBB||",
                                       "BBB/BBB_002.tif|BBB||",
                                       "BBB/myeloblast/m1.tif|BBB|myeloblast|",
                                       "loose.tif|||",
                                   }));
    QCOMPARE(r->items[1].path, spath(dir, "AAA/AAA_001.tif"));
    QVERIFY(r->items[1].metadata.empty());
    QVERIFY(r->issues.empty());
}

void TestImportScan::classPerFolderNestedBmc()
{
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    QVERIFY(makeFile(dir, "Myeloid/BLA/BLA_00001.jpg"));
    QVERIFY(makeFile(dir, "Myeloid/BLA/BLA_00002.jpg"));
    QVERIFY(makeFile(dir, "Myeloid/NGS/NGS_00001.jpg"));
    QVERIFY(makeFile(dir, "Lymphoid/LYT/LYT_00001.jpg"));
    QVERIFY(makeFile(dir, "Lymphoid/LYT/LYT_00002.JPG"));
    QVERIFY(makeFile(dir, "EBO/EBO_1.png")); // one level only
    QVERIFY(makeFile(dir, "root_image.jpg"));
    QVERIFY(QDir(dir.path()).mkpath("Empty/Class"));

    // ClassPerFolder is the default layout.
    const auto r = scanFolder(dir.path().toStdString());
    QVERIFY2(r.ok(), r.message().c_str());
    QCOMPARE(itemSummary(*r, dir), (std::vector<std::string>{
                                       "EBO/EBO_1.png||EBO|",
                                       "Lymphoid/LYT/LYT_00001.jpg||LYT|",
                                       "Lymphoid/LYT/LYT_00002.JPG||LYT|",
                                       "Myeloid/BLA/BLA_00001.jpg||BLA|",
                                       "Myeloid/BLA/BLA_00002.jpg||BLA|",
                                       "Myeloid/NGS/NGS_00001.jpg||NGS|",
                                       "root_image.jpg|||",
                                   }));
    QVERIFY(r->issues.empty());
}

void TestImportScan::flatSkipsHiddenAndNonImages()
{
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    QVERIFY(makeFile(dir, "b.PNG"));
    QVERIFY(makeFile(dir, "a.jpeg"));
    QVERIFY(makeFile(dir, "c.BMP"));
    QVERIFY(makeFile(dir, "d.TIFF"));
    QVERIFY(makeFile(dir, "sub/e.Jpg"));
    QVERIFY(makeFile(dir, "folder.png/inside.tif")); // a folder whose name looks like an image
    QVERIFY(makeFile(dir, "readme.txt"));
    QVERIFY(makeFile(dir, "labels.csv"));
    QVERIFY(makeFile(dir, "image.gif"));
    QVERIFY(makeFile(dir, "noext"));
    QVERIFY(makeFile(dir, ".hidden.png"));
    QVERIFY(makeFile(dir, ".cache/thumb.png"));
    QVERIFY(makeFile(dir, "sub/.DS_Store"));
    QVERIFY(makeFile(dir, "sub/._e.Jpg")); // macOS resource fork next to a real image

    ScanOptions opts;
    opts.layout = FolderLayout::Flat;
    const auto r = scanFolder(dir.path().toStdString(), opts);
    QVERIFY2(r.ok(), r.message().c_str());
    QCOMPARE(itemSummary(*r, dir), (std::vector<std::string>{
                                       "a.jpeg|||",
                                       "b.PNG|||",
                                       "c.BMP|||",
                                       "d.TIFF|||",
                                       "folder.png/inside.tif|||",
                                       "sub/e.Jpg|||",
                                   }));
    QVERIFY(r->issues.empty());

    // The same tree as classes: sub-folders label, root files do not.
    const auto asClasses = scanFolder(dir.path().toStdString());
    QVERIFY(asClasses.ok());
    QCOMPARE(asClasses->items.size(), size_t(6));
    QCOMPARE(asClasses->items[4].className, std::string("folder.png"));
    QCOMPARE(asClasses->items[5].className, std::string("sub"));
    QCOMPARE(asClasses->items[0].className, std::string());
}

void TestImportScan::diagnosisThenPatient()
{
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    QVERIFY(makeFile(dir, "AML_PML_RARA/P01/c1.tif"));
    QVERIFY(makeFile(dir, "AML_PML_RARA/P01/c2.tif"));
    QVERIFY(makeFile(dir, "AML_PML_RARA/P02/c1.tif"));
    QVERIFY(makeFile(dir, "CBFB_MYH11/P07/c1.tif"));
    QVERIFY(makeFile(dir, "CBFB_MYH11/P07/Myeloblast/c9.tif"));
    QVERIFY(makeFile(dir, "CBFB_MYH11/P07/P07/c3.tif"));
    QVERIFY(makeFile(dir, "Control/orphan.tif")); // no patient level
    QVERIFY(makeFile(dir, "top.tif"));

    ScanOptions opts;
    opts.layout = FolderLayout::DiagnosisThenPatient;
    const auto r = scanFolder(dir.path().toStdString(), opts);
    QVERIFY2(r.ok(), r.message().c_str());
    QCOMPARE(itemSummary(*r, dir), (std::vector<std::string>{
                                       "AML_PML_RARA/P01/c1.tif|P01||AML_PML_RARA",
                                       "AML_PML_RARA/P01/c2.tif|P01||AML_PML_RARA",
                                       "AML_PML_RARA/P02/c1.tif|P02||AML_PML_RARA",
                                       "CBFB_MYH11/P07/Myeloblast/c9.tif|P07|Myeloblast|CBFB_MYH11",
                                       "CBFB_MYH11/P07/P07/c3.tif|P07||CBFB_MYH11",
                                       "CBFB_MYH11/P07/c1.tif|P07||CBFB_MYH11",
                                       "Control/orphan.tif|||Control",
                                       "top.tif|||",
                                   }));
    QVERIFY(r->issues.empty());
}

void TestImportScan::rootSpellingIsNormalised()
{
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    QVERIFY(makeFile(dir, "AAA/x.tif"));
    QVERIFY(makeFile(dir, "other/y.tif"));

    // Trailing slash and ".." in the root spelling disappear from item paths.
    const std::string messy = dir.path().toStdString() + "/other/../";
    const auto r = scanFolder(messy);
    QVERIFY2(r.ok(), r.message().c_str());
    QCOMPARE(itemPaths(*r), (std::vector<std::string>{spath(dir, "AAA/x.tif"), spath(dir, "other/y.tif")}));

    // A relative root is made absolute against the working directory.
    const QString oldCwd = QDir::currentPath();
    QVERIFY(QDir::setCurrent(dir.path()));
    const auto rel = scanFolder("AAA");
    QVERIFY(QDir::setCurrent(oldCwd));
    QVERIFY2(rel.ok(), rel.message().c_str());
    QCOMPARE(itemPaths(*rel), (std::vector<std::string>{spath(dir, "AAA/x.tif")}));
    QCOMPARE(rel->items[0].className, std::string()); // x.tif lies directly in that root
}

void TestImportScan::symlinksNotFollowedByDefault()
{
    QTemporaryDir outside;
    QTemporaryDir dir;
    QVERIFY(outside.isValid() && dir.isValid());
    QVERIFY(makeFile(outside, "secret.tif"));
    QVERIFY(makeFile(outside, "OtherSet/o1.tif"));
    QVERIFY(makeFile(dir, "LYT/real.tif"));
    QVERIFY(QFile::link(outside.filePath("secret.tif"), dir.filePath("LYT/linked_out.tif")));
    QVERIFY(QFile::link(dir.filePath("LYT/real.tif"), dir.filePath("LYT/linked_in.tif")));
    QVERIFY(QFile::link(outside.filePath("OtherSet"), dir.filePath("OtherSet")));
    QVERIFY(QFile::link(dir.filePath("LYT"), dir.filePath("LYT_alias")));
    QVERIFY(QFile::link(dir.filePath("missing.tif"), dir.filePath("LYT/broken.tif")));

    const auto r = scanFolder(dir.path().toStdString());
    QVERIFY2(r.ok(), r.message().c_str());
    // A link to a file inside the root is harmless and kept under the link's own path.
    QCOMPARE(itemSummary(*r, dir), (std::vector<std::string>{
                                       "LYT/linked_in.tif||LYT|",
                                       "LYT/real.tif||LYT|",
                                   }));
    QCOMPARE(r->issues.size(), size_t(4));
    // Issues come in path order.
    QCOMPARE(r->issues[0].path, spath(dir, "LYT/broken.tif"));
    QVERIFY2(contains(r->issues[0].message, "symbolic link whose target cannot be reached"),
             r->issues[0].message.c_str());
    QCOMPARE(r->issues[1].path, spath(dir, "LYT/linked_out.tif"));
    QCOMPARE(r->issues[1].message, std::string("symbolic link to a file outside the import folder; not followed"));
    QCOMPARE(r->issues[2].path, spath(dir, "LYT_alias"));
    QCOMPARE(r->issues[2].message, std::string("symbolic link to a folder; not followed"));
    QCOMPARE(r->issues[3].path, spath(dir, "OtherSet"));
    QCOMPARE(r->issues[3].message, std::string("symbolic link to a folder; not followed"));
}

void TestImportScan::symlinksFollowedWhenAsked()
{
    QTemporaryDir outside;
    QTemporaryDir dir;
    QVERIFY(outside.isValid() && dir.isValid());
    QVERIFY(makeFile(outside, "secret.tif"));
    QVERIFY(makeFile(outside, "OtherSet/o1.tif"));
    QVERIFY(makeFile(dir, "LYT/real.tif"));
    QVERIFY(QFile::link(outside.filePath("secret.tif"), dir.filePath("LYT/linked_out.tif")));
    QVERIFY(QFile::link(outside.filePath("OtherSet"), dir.filePath("OtherSet")));
    QVERIFY(QFile::link(dir.path(), dir.filePath("LYT/loop"))); // points back at the root

    ScanOptions opts;
    opts.followSymlinks = true;
    const auto r = scanFolder(dir.path().toStdString(), opts);
    QVERIFY2(r.ok(), r.message().c_str());
    QCOMPARE(itemSummary(*r, dir), (std::vector<std::string>{
                                       "LYT/linked_out.tif||LYT|",
                                       "LYT/real.tif||LYT|",
                                       "OtherSet/o1.tif||OtherSet|",
                                   }));
    // The loop ends after one step instead of walking root/LYT/loop/LYT/loop/...
    QCOMPARE(r->issues.size(), size_t(1));
    QCOMPARE(r->issues[0].path, spath(dir, "LYT/loop"));
    QCOMPARE(r->issues[0].message,
             std::string("this folder was already scanned under another path (symbolic link); skipped"));
}

void TestImportScan::unreadableFolderBecomesIssue()
{
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    QVERIFY(makeFile(dir, "A/a.tif"));
    QVERIFY(makeFile(dir, "B/b.tif"));
    QVERIFY(makeFile(dir, "C/c.tif"));
    const std::string root = dir.path().toStdString();
    const std::string locked = spath(dir, "B");
    const bool asRoot = ::geteuid() == 0;
    if (asRoot) {
        // Root reads any folder whatever its mode, so the scan runs in a child that has become
        // "nobody"; the tree is handed to that user, all but B readable to it.
        const auto [uid, gid] = nobodyIds();
        for (const QString &rel : {QString(), QStringLiteral("A"), QStringLiteral("A/a.tif"), QStringLiteral("B"),
                                   QStringLiteral("B/b.tif"), QStringLiteral("C"), QStringLiteral("C/c.tif")}) {
            const std::string p = rel.isEmpty() ? root : spath(dir, rel);
            QVERIFY2(::lchown(p.c_str(), uid, gid) == 0, p.c_str());
        }
    }
    QCOMPARE(::chmod(locked.c_str(), 0), 0);
    Result<ScanResult> r = Error("not run");
    if (asRoot) {
        ChildScan child = scanFolderAsNobody(root, locked);
        ::chmod(locked.c_str(), 0755);
        if (child.skipped)
            QSKIP(qPrintable(QString::fromStdString("running as root and cannot scan as nobody: " + child.why)));
        QVERIFY2(child.why.empty(), child.why.c_str());
        r = std::move(child.result);
    } else {
        r = scanFolder(root);
        ::chmod(locked.c_str(), 0755); // let QTemporaryDir clean up
    }
    QVERIFY2(r.ok(), r.message().c_str());
    QCOMPARE(itemSummary(*r, dir), (std::vector<std::string>{"A/a.tif||A|", "C/c.tif||C|"}));
    QCOMPARE(r->issues.size(), size_t(1));
    QCOMPARE(r->issues[0].path, locked);
    QCOMPARE(r->issues[0].message,
             std::string("could not read this folder (Permission denied); its contents were skipped"));
}

void TestImportScan::scanErrors()
{
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    const std::string missing = spath(dir, "nope");
    const auto r1 = scanFolder(missing);
    QVERIFY(!r1.ok());
    QCOMPARE(r1.message(), std::string("the folder does not exist")); // callers add the path

    QVERIFY(makeFile(dir, "file.tif"));
    const auto r2 = scanFolder(spath(dir, "file.tif"));
    QVERIFY(!r2.ok());
    QCOMPARE(r2.message(), std::string("this is not a folder"));

    const auto r3 = scanFolder("");
    QVERIFY(!r3.ok());
    QCOMPARE(r3.message(), std::string("no import folder was given"));

    // An empty folder is not an error, just nothing to import.
    QVERIFY(QDir(dir.path()).mkdir("empty"));
    const auto r4 = scanFolder(spath(dir, "empty"));
    QVERIFY(r4.ok());
    QVERIFY(r4->items.empty());
    QVERIFY(r4->issues.empty());
}

void TestImportScan::csvQuotesAndEmbeddedCommas()
{
    const auto t = parseCsv("path,comment,n\n"
                            "\"a,b.tif\",\"he said \"\"hi\"\"\",1\n"
                            "plain.tif,,2\n"
                            "\"\",\"x\",\n"
                            "un\"quoted\",\"q\"tail,3\n");
    QVERIFY2(t.ok(), t.message().c_str());
    QCOMPARE(t->header, (std::vector<std::string>{"path", "comment", "n"}));
    QCOMPARE(t->rows.size(), size_t(4));
    QCOMPARE(t->rows[0], (std::vector<std::string>{"a,b.tif", "he said \"hi\"", "1"}));
    QCOMPARE(t->rows[1], (std::vector<std::string>{"plain.tif", "", "2"}));
    QCOMPARE(t->rows[2], (std::vector<std::string>{"", "x", ""}));
    // Not RFC 4180, but what spreadsheets and Python's csv module do with stray quotes.
    QCOMPARE(t->rows[3], (std::vector<std::string>{"un\"quoted\"", "qtail", "3"}));
    QCOMPARE(t->rowLines, (std::vector<int>{2, 3, 4, 5}));

    // Fields are not trimmed; no trailing newline is needed.
    const auto u = parseCsv("a, b\n x ,y ");
    QVERIFY(u.ok());
    QCOMPARE(u->header, (std::vector<std::string>{"a", " b"}));
    QCOMPARE(u->rows, (std::vector<std::vector<std::string>>{{" x ", "y "}}));
}

void TestImportScan::csvEmbeddedNewlinesAndLineNumbers()
{
    const auto t = parseCsv("path,note\n"
                            "a.tif,\"line one\nline two\r\nline three\"\n"
                            "b.tif,after\n"
                            "\n"
                            "c.tif,\"x\"\n");
    QVERIFY2(t.ok(), t.message().c_str());
    QCOMPARE(t->rows.size(), size_t(3));
    QCOMPARE(t->rows[0][1], std::string("line one\nline two\r\nline three"));
    // Row lines count physical lines, so messages point where an editor shows the row.
    QCOMPARE(t->rowLines, (std::vector<int>{2, 5, 7}));

    const auto unclosed = parseCsv("path,note\na.tif,ok\nb.tif,\"never\nclosed\n");
    QVERIFY(!unclosed.ok());
    QCOMPARE(unclosed.message(), std::string("line 3: a quoted field starts here and is never closed"));
}

void TestImportScan::csvCrlfBomAndSemicolons()
{
    const auto crlf = parseCsv("\xEF\xBB\xBFpath,class\r\na.tif,LYT\r\n\"b;c.tif\",\"x\r\ny\"\r\n");
    QVERIFY2(crlf.ok(), crlf.message().c_str());
    QCOMPARE(crlf->header, (std::vector<std::string>{"path", "class"})); // BOM gone
    QCOMPARE(crlf->rows, (std::vector<std::vector<std::string>>{{"a.tif", "LYT"}, {"b;c.tif", "x\r\ny"}}));
    QCOMPARE(crlf->rowLines, (std::vector<int>{2, 3}));

    // Decimal-comma locales: ';' as delimiter, commas inside values stay in the value.
    const auto semi = parseCsv("\xEF\xBB\xBFpath;size;\"a;b\"\r\nx.tif;1,5;q\r\n\"y;z.tif\";2,25;\r\n");
    QVERIFY2(semi.ok(), semi.message().c_str());
    QCOMPARE(semi->header, (std::vector<std::string>{"path", "size", "a;b"}));
    QCOMPARE(semi->rows, (std::vector<std::vector<std::string>>{{"x.tif", "1,5", "q"}, {"y;z.tif", "2,25", ""}}));

    // A comma in the header wins even when semicolons appear too.
    const auto mixed = parseCsv("path,note\na.tif,x;y\n");
    QVERIFY(mixed.ok());
    QCOMPARE(mixed->rows[0], (std::vector<std::string>{"a.tif", "x;y"}));

    // Old Mac line ends (lone CR).
    const auto cr = parseCsv("path\ra.tif\rb.tif");
    QVERIFY(cr.ok());
    QCOMPARE(cr->rows, (std::vector<std::vector<std::string>>{{"a.tif"}, {"b.tif"}}));
    QCOMPARE(cr->rowLines, (std::vector<int>{2, 3}));
}

void TestImportScan::csvTabsAndBlankLines()
{
    const auto t = parseCsv("\n\npath\tpatient\n\na.tif\tAAA\n   \nb.tif\t\n");
    QVERIFY2(t.ok(), t.message().c_str());
    QCOMPARE(t->header, (std::vector<std::string>{"path", "patient"}));
    QCOMPARE(t->rows, (std::vector<std::vector<std::string>>{{"a.tif", "AAA"}, {"b.tif", ""}}));
    QCOMPARE(t->rowLines, (std::vector<int>{5, 7}));

    // A single-column table stays single-column.
    const auto one = parseCsv("path\na.tif\n");
    QVERIFY(one.ok());
    QCOMPARE(one->header, (std::vector<std::string>{"path"}));
    QCOMPARE(one->rows.size(), size_t(1));

    // A quoted empty field is a real row, not a blank line.
    const auto quotedEmpty = parseCsv("path\n\"\"\n");
    QVERIFY(quotedEmpty.ok());
    QCOMPARE(quotedEmpty->rows, (std::vector<std::vector<std::string>>{{""}}));
}

void TestImportScan::csvErrors()
{
    const auto empty = parseCsv("");
    QVERIFY(!empty.ok());
    QCOMPARE(empty.message(), std::string("the file is empty; a header line is needed"));
    QVERIFY(!parseCsv("\xEF\xBB\xBF").ok());
    QVERIFY(!parseCsv("\r\n\n  \n").ok());

    const auto big = parseCsv(std::string(3u << 20, 'a'), 2u << 20);
    QVERIFY(!big.ok());
    QCOMPARE(big.message(), std::string("the table is 3 MiB, more than the 2 MiB a table may have"));

    const auto binary = parseCsv(std::string("PK\x03\x04\0\0", 6));
    QVERIFY(!binary.ok());
    QVERIFY2(contains(binary.message(), "does not look like a text table"), binary.message().c_str());
}

void TestImportScan::manifestRelativePathsAndMetadata()
{
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    const QByteArray csv = "path,patient,class,diagnosis,stain,\"scanner, model\"\n"
                           "img/a.tif,AAA,LYT,AML,MGG,\"Cella, v2\"\n"
                           "../outside/b.tif,BBB,,APL,MGG,x\n"           // resolved, then normalised
                           "/abs/c.png,,BLA,,,\n"
                           "img/bad.tif,AAA,LYT\n"                       // line 5: wrong field count
                           "img/a.tif,ZZZ,NGS,CML,HE,dup\n"              // line 6: duplicate
                           ",CCC,LYT,AML,MGG,y\n"                        // line 7: empty path
                           ",,,,,\n"                                     // padding, skipped silently
                           "./img/./d.tif , DDD ,\"Band cell\",AML,MGG,\"multi\nline\"\n";
    QVERIFY(makeFile(dir, "sets/manifest.csv", csv));

    const auto r = readManifest(spath(dir, "sets/manifest.csv"));
    QVERIFY2(r.ok(), r.message().c_str());
    QCOMPARE(r->items.size(), size_t(4));

    // Manifest order is kept.
    const ImportItem &a = r->items[0];
    QCOMPARE(a.path, spath(dir, "sets/img/a.tif"));
    QCOMPARE(a.patientCode, std::string("AAA"));
    QCOMPARE(a.className, std::string("LYT"));
    QCOMPARE(a.diagnosis, std::string("AML"));
    QCOMPARE(a.metadata, (Meta{{"stain", "MGG"}, {"scanner, model", "Cella, v2"}}));

    QCOMPARE(r->items[1].path, spath(dir, "outside/b.tif"));
    QCOMPARE(r->items[1].patientCode, std::string("BBB"));
    QCOMPARE(r->items[1].className, std::string());
    QCOMPARE(r->items[1].diagnosis, std::string("APL"));

    QCOMPARE(r->items[2].path, std::string("/abs/c.png"));
    QCOMPARE(r->items[2].className, std::string("BLA"));
    QCOMPARE(r->items[2].metadata, (Meta{{"stain", ""}, {"scanner, model", ""}}));

    // Values are trimmed; quoted newlines survive in metadata.
    QCOMPARE(r->items[3].path, spath(dir, "sets/img/d.tif"));
    QCOMPARE(r->items[3].patientCode, std::string("DDD"));
    QCOMPARE(r->items[3].className, std::string("Band cell"));
    QCOMPARE(r->items[3].metadata, (Meta{{"stain", "MGG"}, {"scanner, model", "multi\nline"}}));

    const std::string manifest = spath(dir, "sets/manifest.csv");
    QCOMPARE(r->issues.size(), size_t(3));
    QCOMPARE(r->issues[0].path, manifest);
    QCOMPARE(r->issues[0].message, std::string("manifest.csv line 5: 3 fields, header has 6"));
    QCOMPARE(r->issues[1].path, manifest);
    QCOMPARE(r->issues[1].message,
             "manifest.csv line 6: " + spath(dir, "sets/img/a.tif") + " is listed again; only its first row is used");
    QCOMPARE(r->issues[2].message, std::string("manifest.csv line 7: the path is empty"));
}

void TestImportScan::manifestAliasesCaseAndSemicolons()
{
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    // Excel in a decimal-comma locale: BOM, semicolons, CRLF, capitalised headers with spaces.
    QVERIFY(makeFile(dir, "m.csv",
                     "\xEF\xBB\xBF" "Filename;Patient ID;Cell-Type;Area\r\n"
                     "x.tif;P1;Myeloblast;12,5\r\n"
                     "y.TIF;P2;Monocyte;8\r\n"));
    const auto r = readManifest(spath(dir, "m.csv"));
    QVERIFY2(r.ok(), r.message().c_str());
    QCOMPARE(r->items.size(), size_t(2));
    QCOMPARE(r->items[0].path, spath(dir, "x.tif"));
    QCOMPARE(r->items[0].patientCode, std::string("P1"));
    QCOMPARE(r->items[0].className, std::string("Myeloblast"));
    QCOMPARE(r->items[0].metadata, (Meta{{"Area", "12,5"}}));
    QCOMPARE(r->items[1].className, std::string("Monocyte"));
    QVERIFY(r->issues.empty());

    // "path" wins over the alias "image", which then is ordinary metadata.
    QVERIFY(makeFile(dir, "both.csv", "image,PATH,label\nthumb.png,full.tif,EBO\n"));
    const auto both = readManifest(spath(dir, "both.csv"));
    QVERIFY2(both.ok(), both.message().c_str());
    QCOMPARE(both->items.size(), size_t(1));
    QCOMPARE(both->items[0].path, spath(dir, "full.tif"));
    QCOMPARE(both->items[0].className, std::string("EBO"));
    QCOMPARE(both->items[0].metadata, (Meta{{"image", "thumb.png"}}));
}

void TestImportScan::manifestErrors()
{
    QTemporaryDir dir;
    QVERIFY(dir.isValid());

    QVERIFY(makeFile(dir, "nopath.csv", "name,Patient,class\na.tif,AAA,LYT\n"));
    const auto noPath = readManifest(spath(dir, "nopath.csv"));
    QVERIFY(!noPath.ok());
    QCOMPARE(noPath.message(), std::string("no column for the image path (expected path, file, "
                                           "filename or image); columns found: \"name\", \"Patient\", \"class\""));

    QVERIFY(makeFile(dir, "empty.csv", ""));
    const auto empty = readManifest(spath(dir, "empty.csv"));
    QVERIFY(!empty.ok());
    QCOMPARE(empty.message(), std::string("the file is empty; a header line is needed"));

    // Header only: valid, nothing to import.
    QVERIFY(makeFile(dir, "header.csv", "path,class\n"));
    const auto headerOnly = readManifest(spath(dir, "header.csv"));
    QVERIFY(headerOnly.ok());
    QVERIFY(headerOnly->items.empty());
    QVERIFY(headerOnly->issues.empty());

    const auto missing = readManifest(spath(dir, "missing.csv"));
    QVERIFY(!missing.ok());
    QCOMPARE(missing.message(), std::string("the manifest does not exist"));

    QVERIFY(QDir(dir.path()).mkdir("folder.csv"));
    const auto folder = readManifest(spath(dir, "folder.csv"));
    QVERIFY(!folder.ok());
    QCOMPARE(folder.message(), std::string("this is a folder, not a CSV file"));

    QVERIFY(makeFile(dir, "unclosed.csv", "path\n\"a.tif\n"));
    const auto unclosed = readManifest(spath(dir, "unclosed.csv"));
    QVERIFY(!unclosed.ok());
    QCOMPARE(unclosed.message(), std::string("line 2: a quoted field starts here and is never closed"));
}

void TestImportScan::patientTable()
{
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    QVERIFY(makeFile(dir, "patients.csv",
                     "Patient_ID,age,Subtype,sex\n"
                     "AAA,54,PML::RARA,f\n"
                     "BBB,61,\"CBFB::MYH11\",m\n"
                     "CCC,70\n"                  // line 4: too few fields
                     "AAA,99,NPM1,m\n"           // line 5: repeated code
                     " ,40,NPM1,f\n"             // line 6: empty code
                     "DDD,,,\n"));
    std::vector<ScanIssue> issues;
    const auto r = readPatientTable(spath(dir, "patients.csv"), &issues);
    QVERIFY2(r.ok(), r.message().c_str());
    QCOMPARE(r->size(), size_t(3));
    QCOMPARE((*r)[0].code, std::string("AAA"));
    QCOMPARE((*r)[0].diagnosis, std::string("PML::RARA"));
    QCOMPARE((*r)[0].metadata, (Meta{{"age", "54"}, {"sex", "f"}}));
    QCOMPARE((*r)[1].code, std::string("BBB"));
    QCOMPARE((*r)[1].diagnosis, std::string("CBFB::MYH11"));
    QCOMPARE((*r)[2].code, std::string("DDD"));
    QCOMPARE((*r)[2].diagnosis, std::string());
    QCOMPARE((*r)[2].metadata, (Meta{{"age", ""}, {"sex", ""}}));

    QCOMPARE(issues.size(), size_t(3));
    QCOMPARE(issues[0].path, spath(dir, "patients.csv"));
    QCOMPARE(issues[0].message, std::string("patients.csv line 4: 2 fields, header has 4"));
    QCOMPARE(issues[1].message, std::string("patients.csv line 5: patient AAA is listed again; only its first row is used"));
    QCOMPARE(issues[2].message, std::string("patients.csv line 6: the patient code is empty"));

    // Issues are optional; "code" and "diagnosis" are accepted, diagnosis column optional.
    const auto again = readPatientTable(spath(dir, "patients.csv"));
    QVERIFY(again.ok());
    QCOMPARE(again->size(), size_t(3));

    QVERIFY(makeFile(dir, "codes.csv", "code;diagnosis\nP1;AML\n"));
    const auto codes = readPatientTable(spath(dir, "codes.csv"));
    QVERIFY2(codes.ok(), codes.message().c_str());
    QCOMPARE(codes->size(), size_t(1));
    QCOMPARE((*codes)[0].code, std::string("P1"));
    QCOMPARE((*codes)[0].diagnosis, std::string("AML"));
    QVERIFY((*codes)[0].metadata.empty());

    QVERIFY(makeFile(dir, "onlycodes.csv", "patient\nX\nY\n"));
    const auto only = readPatientTable(spath(dir, "onlycodes.csv"));
    QVERIFY(only.ok());
    QCOMPARE(only->size(), size_t(2));
    QCOMPARE((*only)[1].code, std::string("Y"));
    QCOMPARE((*only)[1].diagnosis, std::string());
}

void TestImportScan::patientTableErrors()
{
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    QVERIFY(makeFile(dir, "p.csv", "name,diagnosis\nAAA,AML\n"));
    const auto r = readPatientTable(spath(dir, "p.csv"));
    QVERIFY(!r.ok());
    QCOMPARE(r.message(), std::string("no patient column (expected patient, patient_id, patient_code or "
                                      "code); columns found: \"name\", \"diagnosis\""));

    QVERIFY(makeFile(dir, "e.csv", "\xEF\xBB\xBF\r\n"));
    const auto e = readPatientTable(spath(dir, "e.csv"));
    QVERIFY(!e.ok());
    QCOMPARE(e.message(), std::string("the file is empty; a header line is needed"));

    const auto missing = readPatientTable(spath(dir, "none.csv"));
    QVERIFY(!missing.ok());
    QCOMPARE(missing.message(), std::string("the patient table does not exist"));
}

QTEST_APPLESS_MAIN(TestImportScan)
#include "tst_importscan.moc"
