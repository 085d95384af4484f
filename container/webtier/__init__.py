"""REDCap container web tier: Apache (event MPM) in front of PHP-FPM, sized at every start.

``python3 -m webtier`` is what the image's CMD (``redcap-apache``) execs after its port checks.
It reads the memory the container may use, derives the number of PHP workers, the request
queue, Apache's threads and the timeouts from it and the environment (``sizing``), starts
PHP-FPM and Apache with those numbers and supervises both as PID 1 (``supervise``).
Standard library only; container/README.md ("Web tier") documents the rule.
"""
