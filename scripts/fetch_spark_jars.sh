#!/usr/bin/env bash
# Resolve the jars listed in LIST (group:artifact:version per line, '#' comments) from Maven Central into
# DIR, exactly those and nothing transitive, with Maven's checksums enforced. Jars in DIR that the list does
# not name are removed, since Spark puts the whole folder on its classpath. Skips itself when DIR already
# holds every listed jar.
#
#   scripts/fetch_spark_jars.sh requirements/spark-jars.txt ~/.cache/seqrec/jars
set -euo pipefail

LIST="$1"
DIR="$2"
mapfile -t COORDINATES < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$LIST" | grep -v '^$')
EXPECTED=()
for coordinate in "${COORDINATES[@]}"; do
  IFS=: read -r group artifact version <<<"$coordinate"
  [ -n "$group" ] && [ -n "$artifact" ] && [ -n "$version" ] \
    || { echo "fetch_spark_jars.sh: '$coordinate' in $LIST is not group:artifact:version" >&2; exit 2; }
  EXPECTED+=("$artifact-$version.jar")
done

missing=0
for jar in "${EXPECTED[@]}"; do [ -s "$DIR/$jar" ] || missing=1; done
if [ "$missing" = 0 ]; then
  echo "all ${#EXPECTED[@]} jars present in $DIR"
else
  WORK=$(mktemp -d)
  trap 'rm -rf "$WORK"' EXIT
  {
    echo '<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>'
    echo '<groupId>seqrec</groupId><artifactId>spark-jars</artifactId><version>1</version><packaging>pom</packaging>'
    echo '<dependencies>'
    for coordinate in "${COORDINATES[@]}"; do
      IFS=: read -r group artifact version <<<"$coordinate"
      echo "<dependency><groupId>$group</groupId><artifactId>$artifact</artifactId><version>$version</version></dependency>"
    done
    echo '</dependencies></project>'
  } >"$WORK/pom.xml"
  mkdir -p "$DIR"
  mvn -q -B --strict-checksums -f "$WORK/pom.xml" dependency:copy-dependencies \
    -DexcludeTransitive=true -DoutputDirectory="$DIR"
fi
for jar in "$DIR"/*.jar; do
  name=$(basename "$jar")
  printf '%s\n' "${EXPECTED[@]}" | grep -qxF "$name" || { echo "removing $name (not in $LIST)"; rm -f "$jar"; }
done
for jar in "${EXPECTED[@]}"; do
  [ -s "$DIR/$jar" ] || { echo "fetch_spark_jars.sh: $jar was not resolved into $DIR" >&2; exit 1; }
done
echo "$DIR: ${EXPECTED[*]}"
