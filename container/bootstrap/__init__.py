"""REDCap container start-time bootstrap.

Runs as the image's ENTRYPOINT (``python3 -m bootstrap``, see container/README.md) before the
CMD (Apache): validates the environment, reads secrets, prepares the database and REDCap's
database.php, then execs the CMD. Standard library, boto3 and pymysql only (Debian packages
python3-boto3 and python3-pymysql in the image).
"""
