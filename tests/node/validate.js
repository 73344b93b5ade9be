// Validate a glTF/GLB file with the Khronos glTF validator and print its JSON report.
// Usage: node validate.js file.glb   (exit 0 when the file has no errors, 1 otherwise, 2 on usage/IO errors)
const fs = require("fs");
const path = require("path");
const validator = require("gltf-validator");

async function main() {
  const file = process.argv[2];
  if (!file) {
    console.error("usage: node validate.js <file.glb|file.gltf>");
    process.exit(2);
  }
  const data = new Uint8Array(fs.readFileSync(file));
  const report = await validator.validateBytes(data, {
    uri: path.basename(file),
    maxIssues: 100,
    externalResourceFunction: (uri) =>
      new Promise((resolve, reject) => {
        fs.readFile(path.resolve(path.dirname(file), decodeURIComponent(uri)), (err, buf) => (err ? reject(err.toString()) : resolve(new Uint8Array(buf))));
      }),
  });
  process.stdout.write(JSON.stringify(report, null, 1) + "\n");
  process.exit(report.issues.numErrors === 0 ? 0 : 1);
}

main().catch((err) => {
  console.error(String(err));
  process.exit(2);
});
