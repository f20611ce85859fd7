"""/v1/combo/files: upload, list, read and delete knowledge files (owner-scoped).

Attaching files to agents is the agent's `file_ids` field (see
agents.serializers.AgentSerializer), or `agent_id` on upload.
"""

from __future__ import annotations

from django.core.files.uploadhandler import MemoryFileUploadHandler, TemporaryFileUploadHandler
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.exceptions import ParseError
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response

from agents.knowledge import services
from agents.knowledge.serializers import KnowledgeFileSerializer, KnowledgeFileUploadSerializer
from agents.knowledge.uploads import SizeLimitUploadHandler, check_content_length
from agents.models import Agent, KnowledgeFile
from combo.api import conditional
from combo.api.viewsets import OwnedQuerysetMixin
from combo.errors import ComboError, ErrorCode

_UPLOAD_DESCRIPTION = """Upload a document for agents to answer from (multipart/form-data, field `file`).

The answer comes at once: `201` with `status: "queued"`; parsing, chunking and
indexing run in the background (poll `GET /v1/combo/files/{file_id}` until the
status is `ready` or `failed`, with `failure_reason`). The same bytes uploaded
again by the same owner return the existing file with `200` (attached to
`agent_id` if given) and are not indexed twice.

Refused at once, with nothing stored: an empty file (10120), a kind that is not
supported (10121, HTTP 415), content that does not match the file name, such as
a PDF named `.txt` (10122), a file over the size limit (10123, HTTP 413), no
`file` field or no usable file name on it (10124).
"""


# Django's multipart parser drops a file part whose name it cannot use (none,
# empty, "." or "..", or a Content-Disposition line that is not UTF-8), so the
# view sees no file at all; the answer says what a usable part looks like.
_NO_FILE = (
    "No file was sent in the 'file' field. Send the document as a multipart/form-data part named "
    "\"file\" with its file name, e.g. Content-Disposition: form-data; name=\"file\"; "
    "filename=\"notes.txt\"; a part whose file name is missing, empty, \".\", \"..\" or not UTF-8 "
    "is not read as a file."
)


class UploadParser(MultiPartParser):
    """DRF's multipart parser, with the one terse error a long file name causes worded for the client."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except ParseError as exc:
            if "max total header size" not in str(exc.detail):
                raise
            raise ParseError(
                "A part of the multipart body has more than 1,024 bytes of headers, the most Combo reads; "
                "send the file under a shorter file name (255 characters are kept)."
            ) from None


@conditional.documented
class KnowledgeFileViewSet(
    conditional.ConditionalObjectMixin,
    OwnedQuerysetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Knowledge files: the documents agents retrieve passages from.

    GET of one file answers with its ETag, and with If-None-Match naming it is
    a 304, so a client polling the status while the file is ingested fetches
    it whole only when it changed; GET and DELETE evaluate If-Match too (a
    DELETE with it removes the file only if it is still that version)
    (combo.api.conditional). Files are never updated in place.
    """

    queryset = KnowledgeFile.objects.prefetch_related("agents")
    serializer_class = KnowledgeFileSerializer
    parser_classes = [UploadParser]
    lookup_url_kwarg = "file_id"
    noun = "file"
    version_note = " Any change makes a new version, its ingestion status included."

    @extend_schema(
        operation_id="combo_files_upload",
        summary="Upload a file",
        description=_UPLOAD_DESCRIPTION,
        request={"multipart/form-data": KnowledgeFileUploadSerializer},
        responses={
            201: OpenApiResponse(KnowledgeFileSerializer, description="Stored and queued for ingestion."),
            200: OpenApiResponse(KnowledgeFileSerializer, description="These bytes were uploaded before: that file."),
        },
    )
    def create(self, request, *args, **kwargs):
        check_content_length(request.META)
        django_request = request._request
        django_request.upload_handlers = [
            SizeLimitUploadHandler(django_request),
            MemoryFileUploadHandler(django_request),
            TemporaryFileUploadHandler(django_request),
        ]
        uploads = request.FILES.getlist("file")
        if not uploads:
            raise ComboError(ErrorCode.FILE_MISSING, _NO_FILE)
        if len(uploads) > 1:
            raise ComboError(
                ErrorCode.VALIDATION_FAILED, "Send one file per request.", errors={"file": ["Send one file per request."]}
            )
        form = KnowledgeFileUploadSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        agent = None
        if form.validated_data.get("agent_id"):
            agent = Agent.objects.filter(owner=request.user, id=form.validated_data["agent_id"]).first()
            if agent is None:
                raise ComboError(
                    ErrorCode.VALIDATION_FAILED,
                    "Invalid fields: agent_id.",
                    errors={"agent_id": ["You have no agent with this id."]},
                )
        file, created = services.knowledge_file_upload(owner=request.user, upload=uploads[0], agent=agent)
        file = self.get_queryset().get(pk=file.pk)  # fresh status and agent links
        return Response(
            KnowledgeFileSerializer(file).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )

    @extend_schema(operation_id="combo_files_list", summary="List your files")
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(
        operation_id="combo_files_retrieve",
        summary="Read a file's status",
        description=(
            "The file and its ingestion status (`queued`, `processing`, `ready` or `failed`, with "
            "`failure_reason`). The answer carries an `ETag`; poll with `If-None-Match: <ETag>` and the "
            "answer is `304 Not Modified` with no body until the file changes."
        ),
    )
    def retrieve(self, request, *args, **kwargs):
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(
        operation_id="combo_files_destroy",
        summary="Delete a file",
        description=(
            "Deletes the file, its chunks and search index entries, its links to agents and the stored original. "
            "With `If-Match: <ETag>` only if the file is still that version (else 412, 10061, and nothing is "
            "deleted)."
        ),
        responses={204: None},
    )
    def destroy(self, request, *args, **kwargs):
        return super().destroy(request, *args, **kwargs)

    def perform_destroy(self, instance):
        services.knowledge_file_delete(file=instance, precondition=self.precondition())
